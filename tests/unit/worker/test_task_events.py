"""A worker's task event frames (of each outcome) and heartbeat counters, without a broker."""

from __future__ import annotations

import pytest

from streamtasks import App
from streamtasks.errors import ConfigError
from streamtasks.ops.events import EventFilter, describe
from streamtasks.wire.envelope import Envelope, ErrorInfo, TaskStatus
from streamtasks.wire.events import TaskEvent, TaskEventType, decode_event
from streamtasks.worker.events import TaskEvents
from streamtasks.worker.heartbeats import HeartbeatCounters
from streamtasks.worker.hooks import HookSet
from streamtasks.worker.outcomes import Outcome, Output, Record, Results

NS = "ns"
S = TaskStatus
REC = Record(f"{NS}.tasks.default.retry.1", 2, 41, b"k", b"v", [])


@pytest.fixture
def app() -> App:
    return App("unit", namespace=NS, bootstrap_servers="127.0.0.1:1")


def _result(app: App, status: TaskStatus, error: ErrorInfo | None = None) -> Output:
    env = Envelope(id="t-1", task="mod.add", queue="default", args=b"", attempt=2)
    results = Results(app, "w-1")  # not a deterministic id: no fired index is needed
    return results.result_output(env, status, 1_000, None, error)


def _decoded(frames: list[bytes]) -> list[TaskEvent]:
    out = []
    for frame in frames:
        e = decode_event(frame)
        assert isinstance(e, TaskEvent)
        out.append(e)
    return out


def _types(frames: list[bytes]) -> list[tuple[str, str]]:
    return [(e.type.value, e.queue) for e in _decoded(frames)]


def test_a_retry_outcome_gets_received_started_retried(app: App) -> None:
    retry = Output(f"{NS}.tasks.default.retry.2", b"k", b"env", [])
    outcome = Outcome("retry", (retry, _result(app, TaskStatus.RETRY, ErrorInfo("E", "m"))))
    frames = TaskEvents(app, "w-1").frames(REC, 900, outcome)
    assert _types(frames) == [
        ("RECEIVED", "default"),
        ("STARTED", "default"),
        ("RETRIED", "default"),
    ]
    last = _decoded(frames)[2]
    assert (last.attempt, last.partition, last.offset, last.worker_id) == (2, 2, 41, "w-1")
    assert last.error == ErrorInfo("E", "m") and last.runtime_ms is not None


def test_a_staged_result_gives_the_events_of_its_attempt(app: App) -> None:
    step = Output(f"{NS}.tasks.default", b"k", b"next", [])
    outcome = Outcome("success", (step,), (_result(app, TaskStatus.SUCCESS),))
    frames = TaskEvents(app, "w-1").frames(REC, 900, outcome)
    assert [t for t, _ in _types(frames)] == ["RECEIVED", "STARTED", "SUCCEEDED"]


def test_expired_has_no_started_and_no_result_means_no_events(app: App) -> None:
    events = TaskEvents(app, "w-1")
    expired = events.frames(REC, 900, Outcome("expired", (_result(app, S.EXPIRED),)))
    assert [t for t, _ in _types(expired)] == ["RECEIVED", "EXPIRED"]
    assert events.frames(REC, 900, Outcome("skipped", ())) == []
    letter = Outcome("dead", (Output(f"{NS}.tasks.default.dlq", None, b"x", []),))
    assert events.frames(REC, 900, letter) == []


def test_heartbeat_counters_count_per_queue_and_in_flight() -> None:
    counters = HeartbeatCounters(NS, ["default"])
    hooks = HookSet([counters])
    other = Record(f"{NS}.tasks.mail", 0, 1, None, None, [])
    for rec in (REC, REC, other):
        hooks.received(rec)
    hooks.finished(REC, "retry")
    hooks.finished(other, "dead")
    hooks.assigned([(f"{NS}.tasks.default", 0)])
    totals, per_queue, in_flight, parts = counters.snapshot()
    assert per_queue["default"]["received"] == 2 and per_queue["default"]["retried"] == 1
    assert per_queue["mail"]["dead"] == 1
    assert totals["received"] == 3 and in_flight == 1
    assert parts == [f"{NS}.tasks.default:0"]
    hooks.abandoned(1)
    assert counters.snapshot()[2] == 0


def test_the_filter_and_the_dump_line() -> None:
    event = TaskEvent(
        "t-1",
        "mod.add",
        "default",
        TaskEventType.FAILED,
        timestamp=1_796_000_000_000,
        worker_id="w-1",
        runtime_ms=12.0,
        error=ErrorInfo("ValueError", "bad"),
        partition=0,
        offset=5,
    )
    line = describe(event)
    assert line.startswith("2026-") and " task-failed mod.add[t-1] " in line
    assert "runtime=0.012s" in line and "error=ValueError: 'bad'" in line
    assert EventFilter.of(["mod.add"], ["failed,dead"])(event)
    assert not EventFilter.of(["other"])(event)
    assert EventFilter.of(types=["HEARTBEAT"]).kinds() == frozenset({"heartbeat"})
    assert EventFilter.of(types=["DEAD"]).kinds() == frozenset({"task"})
    assert EventFilter.of().kinds() is None
    with pytest.raises(ConfigError, match="unknown event type NOPE"):
        EventFilter.of(types=["NOPE"])


def test_a_result_read_back_from_its_bytes_gives_the_same_events(app: App) -> None:
    # Given the same result output with and without the record this worker built it from
    built = _result(app, TaskStatus.SUCCESS)
    assert built.result is not None
    read = Output(built.topic, built.key, built.value, built.headers)  # e.g. a chord's result
    # When both outcomes get their events
    events = TaskEvents(app, "w-1")
    with_built = events.frames(REC, 900, Outcome("success", (built,)))
    with_read = events.frames(REC, 900, Outcome("success", (read,)))
    # Then they are the same frames
    assert with_built == with_read
    kinds = [kind for kind, _ in _types(with_built)]
    assert kinds == ["RECEIVED", "STARTED", "SUCCEEDED"]
