"""`streamtasks status` and `streamtasks offsets reset` against a real broker and workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from streamtasks import App, RetryPolicy, current_task
from streamtasks.cli import cli
from streamtasks.testing import skip_if_tansu
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.topics import retry_topic, task_topic
from streamtasks.worker import Worker
from tests.integration.conftest import APP_SPEC, ROOT, StartWorkers
from tests.integration.test_replay import burst, runs


def _run(bootstrap: str, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streamtasks", "-b", bootstrap, *args],
        cwd=ROOT,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=120,
        env={**os.environ, "STREAMTASKS_NAMESPACE": ns, "COLUMNS": "200"},
    )


@pytest.mark.parametrize("command", [["replay"], ["status"], ["offsets", "reset"]], ids=" ".join)
def test_every_ops_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: streamtasks" in result.output


def test_status_with_the_broker_down_is_one_line_and_exit_1() -> None:
    proc = _run("127.0.0.1:1", "nowhere", "status", APP_SPEC, "--json")
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "could not be reached" in proc.stderr


@pytest.mark.timeout(180)
def test_status_shows_lag_in_messages_and_seconds_tier_and_dlq_depths(
    kafka_bootstrap: str, ns: str, app: App
) -> None:
    # Given 4 rejected tasks (dead letters) and 10 others run by a burst worker, which commits
    for i in range(4):
        app.tasks["rejecting"].send(f"no {i}")
    for i in range(10):
        app.tasks["add"].send(i, i)
    assert app.flush(30) == 0
    burst(kafka_bootstrap, ns)
    # ... then, workers stopped, 500 queued tasks aged ~6 s (stamped so, instead of a sleep)
    topic = task_topic(ns, "default")
    queued_at = now_ms() - 6_000
    add = app.tasks["add"]
    for i in range(500):
        value = app.codec.encode(
            app.envelope_schema,
            {
                "id": f"q-{i}",
                "task": "add",
                "queue": "default",
                "attempt": 1,
                "created_at": queued_at,
                "eta": None,
                "expires": None,
                "parent_id": None,
                "root_id": None,
                "workflow_id": None,
                "continuation": [],
                "last_error": None,
                "args": add.encode_args((i, 1), {}),
                "link_error": [],
            },
        )
        app.producer.produce(topic, value=value, key=f"q-{i}".encode(), timestamp=queued_at)
    # ... and in retry tier 1: 3 records due in an hour, 2 already due
    later, past = str(now_ms() + 3_600_000).encode(), str(now_ms() - 1000).encode()
    for i, due in enumerate([later, later, later, past, past]):
        app.producer.produce(
            retry_topic(ns, "default", 1),
            value=b"x",
            key=f"r-{i}".encode(),
            headers=[("st-not-before", due)],
        )
    assert app.flush(30) == 0

    # When status --json is asked
    proc = _run(kafka_bootstrap, ns, "status", APP_SPEC, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)

    # Then the queue shows exactly the 500 queued, the oldest ~6 s old, and the depths
    (queue,) = report["queues"]
    assert queue["name"] == "default"
    assert queue["lag"] == 500
    assert queue["lag_seconds"] >= 5
    assert sum(p["lag"] for p in queue["partitions"]) == 500
    assert sum(p["committed"] or 0 for p in queue["partitions"]) == 14  # the ones run
    assert {p["partition"] for p in queue["partitions"]} == set(range(app.settings.partitions))
    tiers = {t["tier"]: t for t in queue["retry"]}
    assert (tiers[1]["depth"], tiers[1]["due"], tiers[1]["not_due"]) == (5, 2, 3)
    assert tiers[2]["depth"] == tiers[3]["depth"] == 0
    assert queue["dlq_depth"] == 4
    assert report["group"]["members"] == []
    # ... and the burst worker that ran the 14, seen by its heartbeats, is offline
    assert [w["online"] for w in report["workers"]] == [False]


@pytest.mark.timeout(240)
def test_offsets_reset_refuses_with_live_members_then_reruns_exactly_from_a_time(
    kafka_bootstrap: str, ns: str, app: App, start_workers: StartWorkers, tmp_path: Path
) -> None:
    # Given 20 tasks, then a point in time, then 30 more, all run by a live worker
    flag = tmp_path / "flag"
    flag.write_text("")
    task = app.tasks["needs_flag"]
    first = [task.send(str(flag), i) for i in range(20)]
    assert app.flush(30) == 0
    time.sleep(0.05)  # a millisecond gap between the batches' timestamps, not a wait for work
    cut = now_ms()
    time.sleep(0.05)
    second = [task.send(str(flag), 100 + i) for i in range(30)]
    (worker,) = start_workers(1)
    for h in [*first, *second]:
        h.get(timeout=60)

    # When offsets are reset while the worker is a member
    refused = _run(kafka_bootstrap, ns, "offsets", "reset", APP_SPEC, f"--to-datetime={cut}")
    # Then it is refused, saying why, and nothing moves
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "live member" in refused.stderr

    # When the worker stops and offsets are reset to the time
    assert worker.terminate() == 0
    plan = _run(kafka_bootstrap, ns, "offsets", "reset", APP_SPEC, f"--to-datetime={cut}", "--json")
    assert plan.returncode == 0, plan.stdout + plan.stderr
    assert json.loads(plan.stdout)["applied"] is True
    burst(kafka_bootstrap, ns)

    # Then exactly the 30 tasks from that time ran again
    assert runs(flag) == Counter({**{i: 1 for i in range(20)}, **{100 + i: 2 for i in range(30)}})


@pytest.mark.timeout(120)
def test_worker_run_burst_returns_once_drained_with_due_retries_done(
    kafka_bootstrap: str, ns: str
) -> None:
    # Given an app (thread-pool tasks only) with quick tasks and tasks that fail once and are
    # retried after 1 s
    app = App(
        "burst",
        namespace=ns,
        bootstrap_servers=kafka_bootstrap,
        partitions=2,
        retry_tiers=(1, 5),
        consumer_config={"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000,
                         "fetch.wait.max.ms": 10},
    )  # fmt: skip

    @app.task(name="inc")
    def inc(i: int) -> int:
        return i + 1

    @app.task(name="once", retry=RetryPolicy(max_attempts=3, backoff=1.0, jitter=0))
    def once() -> int:
        if current_task().attempt == 1:
            raise ConnectionError("first attempt fails")
        return current_task().attempt

    app.apply_topics()
    quick = [inc.send(i) for i in range(5)]
    flaky = [once.send() for _ in range(3)]
    assert app.flush(30) == 0

    # When a worker runs in burst mode (in this process)
    stats = Worker(app, concurrency=4).run(install_signal_handlers=False, burst=True)

    # Then it returned by itself with everything done, retries included, and committed
    assert (stats.succeeded, stats.retried, stats.failed) == (8, 3, 0)
    assert [h.get(timeout=5) for h in quick] == [1, 2, 3, 4, 5]
    assert [h.get(timeout=5) for h in flaky] == [2, 2, 2]
    again = Worker(app).run(install_signal_handlers=False, burst=True)
    assert again.received == 0  # the first run committed all of it
    app.close()
    # ... and the runs left no task thread behind (a process may run workers one by one)
    for thread in threading.enumerate():
        if thread.name.startswith("streamtasks-task-"):
            thread.join(5)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("streamtasks-task-")]


@pytest.mark.timeout(120)
def test_status_shows_the_group_live_and_its_workers(
    kafka_bootstrap: str, ns: str, app: App, start_workers: StartWorkers, broker_kind: str
) -> None:
    # Given a running worker
    (worker,) = start_workers(1)
    # When status --json is asked
    proc = _run(kafka_bootstrap, ns, "status", APP_SPEC, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    # Then the group is live, and its member is that worker with its partitions
    assert report["group"]["state"] == "STABLE"
    skip_if_tansu(broker_kind, "DescribeGroups answers with no members (the state is right)")
    (member,) = report["group"]["members"]
    assert member["pid"] == worker.pid
    assert len(member["partitions"]) == app.settings.partitions * len(app.worker_topics())
    # and the workers seen by their heartbeats: that one, online (a heartbeat's partitions may
    # predate its assignment, so the group's own view above is the one to count them by)
    (seen,) = report["workers"]
    assert (seen["pid"], seen["online"]) == (worker.pid, True)
