"""`streamtasks dlq list|show|redrive|purge` against a real broker and a real worker."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    Message,
    Producer,
    TopicPartition,
)
from typer.testing import CliRunner

from streamtasks import App, TaskFailedError
from streamtasks.cli import cli
from streamtasks.ops.dlq import dlq_state_topic
from streamtasks.testing import consume_all, unique_name
from streamtasks.wire.envelope import Envelope, ErrorInfo, ResultRecord, TaskStatus, now_ms
from streamtasks.wire.topics import dlq_topic, results_topic, task_topic
from tests.integration.conftest import APP_SPEC, ROOT, StartWorkers

COMMANDS = [["dlq", "list"], ["dlq", "show"], ["dlq", "redrive"], ["dlq", "purge"]]


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_every_dlq_command_has_help_with_an_example(command: list[str]) -> None:
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Example: streamtasks dlq" in result.output
    assert "--queue" in result.output


def test_dlq_group_lists_its_commands() -> None:
    result = CliRunner().invoke(cli, ["dlq", "--help"])
    assert result.exit_code == 0
    for name in ("list", "show", "redrive", "purge"):
        assert name in result.output


# -- helpers ----------------------------------------------------------------------------------


def _dlq(
    bootstrap: str, ns: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``streamtasks dlq ...`` as users do: a fresh process (so the app module is loaded
    with this test's namespace), stdin not a terminal, a wide terminal for tables."""
    return subprocess.run(
        [sys.executable, "-m", "streamtasks", "-b", bootstrap, "dlq", *args],
        cwd=ROOT,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        env={**os.environ, "STREAMTASKS_NAMESPACE": ns, "COLUMNS": "250"},
    )


def _ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def _listed(bootstrap: str, ns: str, *flags: str) -> list[dict[str, object]]:
    out: list[dict[str, object]] = json.loads(
        _ok(_dlq(bootstrap, ns, "list", APP_SPEC, "--json", *flags))
    )
    return out


def _headers(msg: Message) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or []) if isinstance(v, bytes)}


def _read_to_end(bootstrap: str, topic: str, timeout: float = 30) -> list[Message]:
    """Every record of ``topic`` up to the end of each partition (EOF events, not watermarks)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("dlq-test-reader"),
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "fetch.wait.max.ms": 10,
        }
    )
    try:
        partitions = consumer.list_topics(timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        pending, records = set(partitions), []
        deadline = time.monotonic() + timeout
        while pending:
            assert time.monotonic() < deadline, f"{topic} not read to its end: {pending}"
            for msg in consumer.consume(1000, 0.1):
                err = msg.error()
                if err is None:
                    records.append(msg)
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard(msg.partition())
        return records
    finally:
        consumer.close()


def _dead_task(
    app: App, task: str, args: tuple[object, ...], error: tuple[str, str], offset: int
) -> tuple[Envelope, list[tuple[str, bytes]]]:
    """A task the worker gave up on after 4 attempts, with the headers it dead-letters with."""
    env = Envelope(
        id=uuid.uuid4().hex,
        task=task,
        queue="default",
        args=app.tasks[task].encode_args(args, {}),
        attempt=4,
        eta=now_ms() - 1000,
        last_error=ErrorInfo(error[0], error[1], None),
    )
    failed = str(now_ms() - 60_000).encode()
    headers = [
        ("st-task", task.encode()),
        ("st-id", env.id.encode()),
        ("st-attempt", b"4"),
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("st-dlq-reason", b"max-attempts"),
        ("st-error-type", error[0].encode()),
        ("st-error-message", error[1].encode()),
        ("st-traceback", f"Traceback (most recent call last):\n  ...\n{error[0]}".encode()),
        ("st-attempts", b"4"),
        ("st-first-failure", failed),
        ("st-last-failure", failed),
        ("st-origin-topic", f"{app.settings.namespace}.tasks.default.retry.3".encode()),
        ("st-origin-partition", b"0"),
        ("st-origin-offset", str(offset).encode()),
        ("st-worker-id", b"simulated-worker"),
    ]
    return env, headers


# -- the whole life of a dead letter ----------------------------------------------------------


@pytest.mark.integration
def test_list_show_redrive_and_purge_dead_letters(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    b = kafka_bootstrap
    start_workers(1)
    raw = Producer({"bootstrap.servers": b, "linger.ms": 5})
    dlq = dlq_topic(ns, "default")
    # Given bad input the worker dead-letters itself: 3 undecodable records, 2 unknown tasks
    for i in range(3):
        raw.produce(task_topic(ns, "default"), value=b"\x00junk %d" % i, key=b"junk-%d" % i)
    for i in range(2):
        env = Envelope(id=f"unknown-{i}", task="nobody.has.this", queue="default", args=b"")
        raw.produce(
            task_topic(ns, "default"),
            value=app.codec.encode(app.envelope_schema, env.to_avro()),
            key=env.id.encode(),
        )
    assert raw.flush(10) == 0
    assert len(consume_all(b, dlq, expect=5, timeout=30)) == 5
    # And tasks a worker gave up on after their retries: three "add", one "fail"
    adds: dict[str, int] = {}
    for i, (x, y) in enumerate([(1, 2), (10, 20), (100, 200)]):
        env, headers = _dead_task(app, "add", (x, y), ("TimeoutError", "db timed out"), i)
        raw.produce(
            dlq,
            value=app.codec.encode(app.envelope_schema, env.to_avro()),
            key=env.id.encode(),
            headers=headers,
        )
        adds[env.id] = x + y
    fail_env, fail_headers = _dead_task(app, "fail", ("always",), ("ValueError", "always"), 9)
    raw.produce(
        dlq,
        value=app.codec.encode(app.envelope_schema, fail_env.to_avro()),
        key=fail_env.id.encode(),
        headers=fail_headers,
    )
    assert raw.flush(10) == 0

    # When listed (JSON): all 9, dead, with their reasons and errors
    listed = _listed(b, ns)
    assert len(listed) == 9
    assert Counter(d["reason"] for d in listed) == {
        "undecodable": 3,
        "unknown-task": 2,
        "max-attempts": 4,
    }
    assert {d["state"] for d in listed} == {"dead"}
    by_id = {d["task_id"]: d for d in listed}
    assert set(adds) <= set(by_id)
    assert by_id[fail_env.id]["error_message"] == "always"
    assert by_id["unknown-0"]["origin"]["topic"] == task_topic(ns, "default")  # type: ignore[index]
    # And as a table: refs, ids, reasons, errors, ages
    table = _ok(_dlq(b, ns, "list", APP_SPEC))
    some_id = next(iter(adds))
    for text in (dlq, some_id, str(by_id[some_id]["ref"]), "max-attempts", "TimeoutError: db"):
        assert text in table, table
    assert "1m" in table  # the simulated failures happened a minute ago
    assert "showing 2 of 9" in _ok(_dlq(b, ns, "list", APP_SPEC, "--limit", "2"))

    # When one is shown, by task id: headers, decoded arguments, traceback
    shown = _ok(_dlq(b, ns, "show", APP_SPEC, some_id))
    x, y = {3: (1, 2), 30: (10, 20), 300: (100, 200)}[adds[some_id]]
    assert f"add(x={x}, y={y})" in shown, shown
    assert "st-dlq-reason: max-attempts" in shown and "traceparent: 00-0af7" in shown
    assert "Traceback (most recent call last)" in shown
    # and by ref, as JSON
    ref = str(by_id[some_id]["ref"])
    as_json = json.loads(_ok(_dlq(b, ns, "show", APP_SPEC, ref, "--json")))
    assert (as_json["task_id"], as_json["args"], as_json["kwargs"]) == (
        some_id,
        [],
        {"x": x, "y": y},
    )
    # an undecodable one says why its arguments cannot be shown
    junk_ref = next(str(d["ref"]) for d in listed if d["reason"] == "undecodable")
    assert "not a task envelope" in _ok(_dlq(b, ns, "show", APP_SPEC, junk_ref))
    missing = _dlq(b, ns, "show", APP_SPEC, "99:99")
    assert missing.returncode == 1 and "no dead letter '99:99'" in missing.stderr

    # When a dry run is asked for: it says what it would do, and writes nothing
    dry = _ok(_dlq(b, ns, "redrive", APP_SPEC, "--task", "add", "--dry-run"))
    assert "would redrive 3 of 3 selected" in dry
    assert all(tid in dry for tid in adds)
    assert len(_listed(b, ns)) == 9
    assert not consume_all(b, dlq_state_topic(ns, "default"), expect=1, timeout=2)
    # and the error filter selects by "Type: message"
    dry = _ok(_dlq(b, ns, "redrive", APP_SPEC, "--error-match", "^ValueError: al", "--dry-run"))
    assert "would redrive 1 of 1 selected" in dry and fail_env.id in dry

    # When the "add" tasks are redriven, two at first, then the rest
    first = _ok(_dlq(b, ns, "redrive", APP_SPEC, "--task", "add", "--limit", "2"))
    assert "redriven 2 of 3 selected" in first and "1 over the limit" in first
    rest = _ok(_dlq(b, ns, "redrive", APP_SPEC, "--task", "add"))
    assert "redriven 1 of 3 selected; skipped 2 already redriven/purged" in rest
    # Then the worker runs them under their old ids
    for tid, value in adds.items():
        assert app.AsyncResult(tid).get(timeout=30) == value
    # And they are no longer listed as dead
    assert {d["task_id"] for d in _listed(b, ns)}.isdisjoint(adds)

    # When redriven again: nothing is enqueued twice
    again = _ok(_dlq(b, ns, "redrive", APP_SPEC, "--task", "add"))
    assert "redriven 0 of 3 selected; skipped 3 already redriven/purged" in again
    redriven = [
        m for m in _read_to_end(b, task_topic(ns, "default")) if "st-redriven-from" in _headers(m)
    ]
    assert sorted(_headers(m)["st-id"].decode() for m in redriven) == sorted(adds)
    for m in redriven:
        h = _headers(m)
        assert m.key() == h["st-id"]  # same key, so the same partition as before
        assert h["st-attempt"] == b"1" and h["st-redriven-from"].startswith(f"{dlq}:".encode())
        assert h["traceparent"].startswith(b"00-0af7")
        assert "st-dlq-reason" not in h
        env = Envelope.from_avro(app.codec.decode(m.value(), expect=app.envelope_schema)[1])
        assert (env.attempt, env.eta, env.last_error) == (1, None, None)
    # And each task has a PENDING result (written before it was enqueued), then one SUCCESS
    statuses: dict[str, list[TaskStatus]] = defaultdict(list)
    for m in _read_to_end(b, results_topic(ns)):
        rec = ResultRecord.from_avro(app.codec.decode(m.value(), expect=app.result_schema)[1])
        statuses[rec.task_id].append(rec.status)
    for tid in adds:
        assert statuses[tid] == [TaskStatus.PENDING, TaskStatus.SUCCESS]

    # When tasks the app does not have are redriven: they are skipped with the reason
    unknown = _ok(_dlq(b, ns, "redrive", APP_SPEC, "--reason", "unknown-task"))
    assert "redriven 0 of 2 selected" in unknown and "2 not redrivable" in unknown
    assert "task 'nobody.has.this' is not registered" in unknown

    # When purge is run without a terminal and without --yes: it refuses
    refused = _dlq(b, ns, "purge", APP_SPEC)
    assert refused.returncode == 2 and "needs confirmation" in refused.stderr
    assert len(_listed(b, ns)) == 6
    # When the undecodable ones, then the rest, are purged
    assert "purged 3 dead letters" in _ok(
        _dlq(b, ns, "purge", APP_SPEC, "--reason", "undecodable", "--yes")
    )
    assert "purged 3 dead letters" in _ok(_dlq(b, ns, "purge", APP_SPEC, "--yes"))
    # Then nothing is listed, but --all still shows every record with its state
    assert _listed(b, ns) == []
    everything = _listed(b, ns, "--all")
    assert Counter(d["state"] for d in everything) == {"redriven": 3, "purged": 6}
    assert "nothing to purge" in _ok(_dlq(b, ns, "purge", APP_SPEC, "--yes"))
    final = _ok(_dlq(b, ns, "redrive", APP_SPEC))
    assert "redriven 0 of 9 selected; skipped 9 already redriven/purged" in final


@pytest.mark.integration
def test_a_queue_without_a_dlq_topic_is_a_clear_error(kafka_bootstrap: str, ns: str) -> None:
    proc = _dlq(kafka_bootstrap, ns, "list", APP_SPEC, "--queue", "nosuchqueue")
    assert proc.returncode == 1
    assert f"the dead-letter topic '{ns}.tasks.nosuchqueue.dlq' does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.integration
def test_tasks_the_worker_gave_up_on_run_once_more_after_the_fix(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str, tmp_path: Path
) -> None:
    b = kafka_bootstrap
    start_workers(1)
    flag = tmp_path / "flag"
    # Given tasks that fail on every attempt while a file is missing (2 attempts each)
    handles = [app.tasks["needs_flag"].send(str(flag), i) for i in range(3)]
    # Then the worker dead-letters them and reports them DEAD
    for h in handles:
        with pytest.raises(TaskFailedError, match="is missing"):
            h.get(timeout=60)
        assert h.status is TaskStatus.DEAD
    assert len(consume_all(b, dlq_topic(ns, "default"), expect=3, timeout=30)) == 3
    listed = _listed(b, ns)
    assert sorted(d["task_id"] for d in listed) == sorted(h.id for h in handles)
    assert {(d["reason"], d["error_type"], d["attempts"]) for d in listed} == {
        ("max-attempts", "FileNotFoundError", 2)
    }
    # When the cause is fixed and the dead letters are redriven
    flag.write_text("")
    out = _ok(_dlq(b, ns, "redrive", APP_SPEC, "--task", "needs_flag"))
    assert "redriven 3 of 3 selected" in out
    # Then looking the tasks up again (the results topic says PENDING, not DEAD, from the
    # redrive on) gives their new outcome
    assert app.results_listener(history=True).wait_caught_up(30)
    for i, h in enumerate(handles):
        assert app.AsyncResult(h.id).get(timeout=60) == i
    # And a second redrive enqueues nothing, so each task ran exactly once after the fix
    again = _ok(_dlq(b, ns, "redrive", APP_SPEC, "--task", "needs_flag"))
    assert "redriven 0 of 3 selected; skipped 3 already redriven/purged" in again
    redriven = [
        _headers(m)["st-id"].decode()
        for m in _read_to_end(b, task_topic(ns, "default"))
        if "st-redriven-from" in _headers(m)
    ]
    assert sorted(redriven) == sorted(h.id for h in handles)
    assert sorted(Path(str(flag) + ".runs").read_text().split()) == ["0", "1", "2"]
