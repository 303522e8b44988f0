"""Lifecycle events and worker heartbeats on {ns}.events, `streamtasks events`, status rates."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import pytest

from streamtasks import App
from streamtasks.kafka import clients, reader
from streamtasks.ops.events import read_events, workers
from streamtasks.ops.replay import Replay
from streamtasks.testing import WorkerProcess
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.events import TaskEvent, WorkerHeartbeat, WorkerState
from streamtasks.wire.topics import task_topic
from streamtasks.worker import Worker
from tests.integration.conftest import APP_SPEC, ROOT, run_cli

T = TaskEvent


def _cli(bootstrap: str, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli("-b", bootstrap, *args, env={"STREAMTASKS_NAMESPACE": ns, "COLUMNS": "200"})


def _worker(bootstrap: str, ns: str, *args: str) -> WorkerProcess:
    env = {"STREAMTASKS_NAMESPACE": ns}
    return WorkerProcess(APP_SPEC, bootstrap=bootstrap, env=env, args=args, cwd=str(ROOT)).start()


def _task_events(app: App) -> dict[str, list[str]]:
    """Each task's event types in time order (a task's events are on several partitions:
    SENT and REPLAYED on its id's, a worker's in that worker's batches)."""
    found: dict[str, list[TaskEvent]] = defaultdict(list)
    for e in read_events(app, kinds=["task"]):
        assert isinstance(e, TaskEvent)
        found[e.task_id].append(e)
    return {
        task_id: [e.type.value for e in sorted(line, key=lambda e: e.timestamp)]
        for task_id, line in found.items()
    }


def _heartbeats(app: App, worker_id: str | None = None) -> list[WorkerHeartbeat]:
    return [
        e
        for e in read_events(app, kinds=["heartbeat"])
        if isinstance(e, WorkerHeartbeat) and (worker_id is None or e.worker_id == worker_id)
    ]


def _until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Re-read until ``check`` holds (each read waits on the broker, no fixed sleeps)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"


@pytest.mark.timeout(120)
def test_every_event_type_is_written_and_the_events_command_prints_them(
    kafka_bootstrap: str, ns: str, app: App
) -> None:
    # Given an app with events on and a task that retries then succeeds, one that goes DEAD,
    # one that expires and one revoked before any worker runs
    app.events = True
    flaky = app.tasks["flaky"].send(1)
    dead = app.tasks["rejecting"].send("no")
    expired = app.tasks["add"].apply_async((1, 2), expires=0.001)
    revoked = app.tasks["add"].send(3, 4)
    app.revoke(revoked.id)
    assert app.flush(30) == 0

    # When a burst worker with events on runs them all (short heartbeats)
    worker = Worker(app, events=True, heartbeat_interval=0.3, app_spec=APP_SPEC)
    worker.run(install_signal_handlers=False, burst=True)
    # ... and the successful task is replayed
    start, end = str(now_ms() - 120_000), str(now_ms() + 1)
    Replay.create(app, "default", start, end, tasks=["flaky"]).run()
    assert app.flush(30) == 0

    # Then each task's events tell its story, every type appears
    events = _task_events(app)
    assert events[flaky.id][:7] == [
        "SENT",
        "RECEIVED",
        "STARTED",
        "RETRIED",
        "RECEIVED",
        "STARTED",
        "SUCCEEDED",
    ], events[flaky.id]
    assert events[flaky.id][7:] == ["REPLAYED"]
    assert events[dead.id] == ["SENT", "RECEIVED", "STARTED", "DEAD"]
    assert events[expired.id] == ["SENT", "RECEIVED", "EXPIRED"]
    assert events[revoked.id] == ["SENT", "RECEIVED", "REVOKED"]
    # ... with their details
    by_type = {e.type.value: e for e in read_events(app, kinds=["task"]) if isinstance(e, T)}
    assert by_type["DEAD"].error is not None and by_type["DEAD"].error.type == "Reject"
    assert by_type["SUCCEEDED"].attempt == 2 and by_type["SUCCEEDED"].runtime_ms is not None
    assert by_type["SUCCEEDED"].worker_id == worker.worker_id
    assert by_type["RETRIED"].partition is not None and by_type["RETRIED"].offset is not None

    # ... and the worker's heartbeats end OFFLINE with its counters
    beats = _heartbeats(app, worker.worker_id)
    assert beats[0].state is WorkerState.ONLINE
    assert beats[-1].state is WorkerState.OFFLINE
    assert beats[-1].counters["succeeded"] == 1 and beats[-1].counters["retried"] == 1
    assert beats[-1].counters["dead"] == 1 and beats[-1].counters["expired"] == 1
    assert beats[-1].queue_counters["default"]["revoked"] == 1
    assert [w.online for w in workers(app) if w.heartbeat.worker_id == worker.worker_id] == [False]

    # When `streamtasks events --json --task flaky` prints them
    out = _cli(kafka_bootstrap, ns, "events", APP_SPEC, "--json", "--task", "flaky")
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [d["type"] for d in sorted(lines, key=lambda d: d["timestamp"])] == events[flaky.id]
    assert {d["task_id"] for d in lines} == {flaky.id}
    # ... and the plain dump filtered by type
    out = _cli(kafka_bootstrap, ns, "events", APP_SPEC, "--type", "DEAD,HEARTBEAT")
    assert out.returncode == 0, out.stderr
    text = out.stdout.splitlines()
    assert [line for line in text if " task-dead " in line] == [
        line for line in text if "task-" in line
    ]
    assert any(f"rejecting[{dead.id}]" in line for line in text)
    assert any(f"worker-offline {worker.worker_id}" in line for line in text)
    bad = _cli(kafka_bootstrap, ns, "events", APP_SPEC, "--type", "EXPLODED")
    assert bad.returncode == 2 and "unknown event type EXPLODED" in bad.stderr


@pytest.mark.timeout(120)
def test_heartbeats_show_in_status_and_stop_offline_when_the_worker_stops(
    kafka_bootstrap: str, ns: str, app: App
) -> None:
    # Given a worker process with events on and short heartbeats, which ran 20 tasks
    w = _worker(kafka_bootstrap, ns, "--events", "--heartbeat-interval", "0.5")
    try:
        handles = [app.tasks["add"].send(i, i) for i in range(20)]
        assert [h.get(timeout=60) for h in handles] == [2 * i for i in range(20)]

        def counted() -> bool:
            return any(b.counters.get("succeeded") == 20 and b.partitions for b in _heartbeats(app))

        _until(counted, 30, "a heartbeat counting 20 tasks")

        # When status is asked
        out = _cli(kafka_bootstrap, ns, "status", APP_SPEC, "--json")
        assert out.returncode == 0, out.stderr
        report = json.loads(out.stdout)

        # Then it lists the worker online, and the queue's rates over the last minute
        [worker] = report["workers"]
        assert worker["online"] is True and worker["pid"] == w.pid
        assert worker["queues"] and worker["last_heartbeat_age"] < 5
        [default] = [q for q in report["queues"] if q["name"] == "default"]
        assert default["rates"]["finished_per_s"] > 0
        assert default["rates"]["failed_per_s"] == 0

        # When the worker stops cleanly
        assert w.terminate(30) == 0
    finally:
        w.kill()

    # Then its last heartbeat is OFFLINE and no worker is online
    beats = _heartbeats(app)
    assert beats[-1].state is WorkerState.OFFLINE and beats[-1].pid == w.pid
    assert [v.online for v in workers(app)] == [False]
    # ... and the per-task events of all 20 were written
    assert sum(1 for ts in _task_events(app).values() if "SUCCEEDED" in ts) == 20


def _committed_ids(app: App, admin: Any) -> list[str]:
    """The task ids of the default queue's records below the group's committed offsets."""
    topic = task_topic(app.settings.namespace, "default")
    consumer = reader.open_reader(app)
    try:
        parts = reader.partitions_of(consumer, topic)
        committed = clients.committed_offsets(admin, app.settings.worker_group(), topic, parts)
        starts = {(topic, p): reader.BEGINNING for p in parts}
        return [
            dict(m.headers() or [])["st-id"].decode()
            for m in reader.read_range(consumer, starts)
            if (c := committed[int(m.partition() or 0)]) is not None and int(m.offset() or 0) < c
        ]
    finally:
        consumer.close()


@pytest.mark.timeout(120)
def test_events_of_committed_records_survive_kill_9_of_the_worker(
    kafka_bootstrap: str, ns: str, app: App
) -> None:
    # Given a worker with events on, running 400 tasks of 50 ms two at a time
    admin = clients.make_admin(app.settings.admin())
    w = _worker(kafka_bootstrap, ns, "--events", "--concurrency", "2")
    try:
        handles = [app.tasks["work"].send(i, sleep_ms=50) for i in range(400)]
        assert app.flush(30) == 0
        # When it is killed -9 once the group committed a share of them, mid-run
        _until(lambda: len(_committed_ids(app, admin)) >= 40, 60, "40 committed records")
        os.kill(w.pid, signal.SIGKILL)
        w.wait(10)
    finally:
        w.kill()

    # Then every record whose offset the group committed has its final event on {ns}.events
    ids = _committed_ids(app, admin)
    assert 40 <= len(ids) < len(handles)  # killed mid-run
    events = _task_events(app)
    missing = [i for i in ids if not {"RECEIVED", "STARTED", "SUCCEEDED"} <= set(events.get(i, []))]
    assert missing == []


@pytest.mark.timeout(60)
def test_ops_commands_with_the_broker_down_print_one_line_and_exit_1() -> None:
    # uses no session broker (a closed port): runs once, in the Tansu pass (conftest)
    commands = [
        ["replay", APP_SPEC, "--queue", "default", "--from", "-1h", "--to", "now", "--yes"],
        ["offsets", "reset", APP_SPEC, "--queue", "default", "--to-earliest"],
        ["events", APP_SPEC],
    ]
    env = {**os.environ, "STREAMTASKS_NAMESPACE": "nowhere"}
    procs = [  # at once: each waits out the reachability check
        subprocess.Popen(
            [sys.executable, "-m", "streamtasks", "-b", "127.0.0.1:1", *c],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for c in commands
    ]
    for command, proc in zip(commands, procs, strict=True):
        _out, err = proc.communicate(timeout=30)  # a hang fails here
        assert proc.returncode == 1, (command, err)
        assert len(err.strip().splitlines()) == 1, (command, err)
        assert "could not be reached" in err and "Traceback" not in err


@pytest.mark.timeout(60)
def test_events_follow_prints_new_events_as_they_come(
    kafka_bootstrap: str, ns: str, app: App
) -> None:
    # Given `streamtasks events --follow --json` from now on
    app.events = True
    since = now_ms()
    args = ["events", APP_SPEC, "--follow", "--json", "--from", str(since)]
    with subprocess.Popen(
        [sys.executable, "-m", "streamtasks", "-b", kafka_bootstrap, *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "STREAMTASKS_NAMESPACE": ns},
    ) as proc:
        try:
            # When a task is sent
            handle = app.tasks["add"].send(1, 1)
            assert app.flush(30) == 0
            # Then its SENT event is printed while the command keeps following
            assert proc.stdout is not None
            line = json.loads(proc.stdout.readline())
            assert (line["kind"], line["type"], line["task_id"]) == ("task", "SENT", handle.id)
            assert proc.poll() is None
        finally:
            proc.terminate()
