"""The chord join as pure logic: member outcomes in, one completion (callback or failure) out,
offsets finished only when that completion is acknowledged."""

from __future__ import annotations

from typing import Any, cast

import pytest

from streamtasks import App, TaskStatus, chord, group
from streamtasks.wire.envelope import Envelope, ErrorInfo, ResultRecord
from streamtasks.wire.topics import chords_topic
from streamtasks.worker.chords import ChordJoiner, Completion
from streamtasks.worker.executor import Executor, Record
from streamtasks.worker.indexes import FiredIndex
from streamtasks.workflows import TaskFailure, chain, chord_marker_id, encode_step

TOPIC = chords_topic("unit")


class FakeIndex:
    def __init__(self) -> None:
        self.ids: set[str] = set()

    def add(self, task_id: str) -> None:
        self.ids.add(task_id)

    def done(self, task_id: str, *, wait: float = 0) -> bool:
        return task_id in self.ids


@pytest.fixture
def app() -> App:
    a = App("unit", bootstrap_servers="127.0.0.1:1", namespace="unit")

    @a.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @a.task(name="total")
    def total(values: list[int], label: str) -> int:
        return sum(values)

    @a.task(name="on_error")
    def on_error(failure: TaskFailure) -> None:
        return None

    return a


class Harness:
    """Sends a chord with a fake producer and turns its members into outcome records."""

    def __init__(self, app: App, size: int) -> None:
        self.app = app
        self.index = FakeIndex()
        self.executor = Executor(app, "w1", fired=cast(FiredIndex, self.index))
        self.joiner = ChordJoiner(self.executor.results, self.executor.continuation)
        self.joiner.assigned((TOPIC, 0))
        self.sent: list[Envelope] = []
        app.publisher.publish = self._capture  # type: ignore[method-assign,assignment]
        app.results_listener = lambda **_: self  # type: ignore[method-assign,assignment,return-value]
        t = app.tasks
        c = chord(group(t["add"].s(i, 0) for i in range(size)), t["total"].s("sum"))
        self.handle = c.on_error(t["on_error"].s()).apply_async()
        self.offset = 0

    def expect(self, task_id: str) -> None:  # stands in for the result listener
        pass

    def _capture(self, env: Envelope, **_: Any) -> None:
        self.sent.append(env)  # no Delivery: the handles do not wait on the broker

    def outcome(self, index: int, status: TaskStatus = TaskStatus.SUCCESS) -> Record:
        env = self.sent[index]
        task = self.app.tasks[env.task]
        _, record = self.app.codec.decode(env.args, expect=task.args_schema)
        payload = task.encode_result(record["x"]) if status is TaskStatus.SUCCESS else None
        error = None if payload is not None else ErrorInfo("ValueError", f"member {index} broke")
        out = self.executor.continuation.member_outcome(env, status, payload, error)
        rec = Record(out.topic, 0, self.offset, out.key, out.value, out.headers)
        self.offset += 1
        return rec


def test_the_callback_gets_all_results_in_member_order_once_the_last_arrives(app: App) -> None:
    h = Harness(app, 3)
    assert h.joiner.add(h.outcome(2)) is None
    assert h.joiner.add(h.outcome(0)) is None
    done = h.joiner.add(h.outcome(1))
    assert isinstance(done, Completion) and done.offsets == (0, 1, 2)
    (callback,) = done.outputs
    env = Envelope.from_avro(app.codec.decode(callback.value, expect=app.envelope_schema)[1])
    assert env.id == h.handle.id and env.task == "total"
    total = app.tasks["total"]
    assert app.codec.decode(env.args, expect=total.args_schema)[1] == {
        "values": [0, 1, 2],
        "label": "sum",
    }
    assert len(env.link_error) == 1  # the chord's errback travels on with the body
    (marker,) = done.then
    assert marker.key == chord_marker_id(done.chord_id).encode()


def test_offsets_are_committable_only_after_the_completion_is_acknowledged(app: App) -> None:
    h = Harness(app, 2)
    h.joiner.add(h.outcome(0))
    done = h.joiner.add(h.outcome(1))
    assert done is not None
    tracker = h.joiner.tracker((TOPIC, 0))
    assert tracker is not None and tracker.committable() is None
    assert h.joiner.finished((TOPIC, 0), done.offsets)
    assert tracker.committable() == 2


def test_an_incomplete_chord_holds_the_commit_of_later_complete_ones(app: App) -> None:
    a, b = Harness(app, 2), None
    first = a.joiner.add(a.outcome(0))  # chord A: one of two
    assert first is None
    b = Harness(app, 1)
    rec = b.outcome(0)
    shared = Record(rec.topic, 0, 1, rec.key, rec.value, rec.headers)  # same partition, next
    done = a.joiner.add(shared)
    assert done is not None and done.offsets == (1,)
    a.joiner.finished((TOPIC, 0), done.offsets)
    tracker = a.joiner.tracker((TOPIC, 0))
    assert tracker is not None and tracker.committable() is None  # offset 0 still open
    assert a.joiner.pending() == 1


def test_duplicate_outcomes_count_once_and_late_ones_finish_alone(app: App) -> None:
    h = Harness(app, 2)
    assert h.joiner.add(h.outcome(0)) is None
    assert h.joiner.add(h.outcome(0)) is None  # a member re-run after a crash
    done = h.joiner.add(h.outcome(1))
    assert done is not None and done.offsets == (0, 1, 2) and done.outputs
    late = h.joiner.add(h.outcome(1))
    assert late is not None and late.offsets == (3,) and not late.outputs


def test_a_failed_member_fails_the_chord_at_once_and_sends_the_errbacks(app: App) -> None:
    h = Harness(app, 3)
    done = h.joiner.add(h.outcome(1, TaskStatus.DEAD))
    assert done is not None and done.offsets == (0,)
    result, errback = done.outputs
    rec = ResultRecord.from_avro(app.codec.decode(result.value, expect=app.result_schema)[1])
    assert rec.task_id == h.handle.id and rec.status is TaskStatus.FAILURE
    assert rec.error is not None and rec.error.type == "ChordError"
    assert "member 1" in rec.error.message and "ended DEAD: ValueError" in rec.error.message
    env = Envelope.from_avro(app.codec.decode(errback.value, expect=app.envelope_schema)[1])
    assert env.task == "on_error" and env.id == f"err.{h.handle.id}.0"
    # the members that end later are finished without a second verdict
    later = h.joiner.add(h.outcome(0))
    assert later is not None and not later.outputs


def test_a_chord_whose_marker_exists_is_not_joined_again(app: App) -> None:
    """A worker that restarts before committing reads the records again: no second callback."""
    h = Harness(app, 1)
    done = h.joiner.add(h.outcome(0))
    assert done is not None
    h.index.add(chord_marker_id(done.chord_id))  # the marker was acknowledged
    restarted = ChordJoiner(h.executor.results, h.executor.continuation)
    restarted.assigned((TOPIC, 0))
    again = h.outcome(0)
    replay = restarted.add(Record(again.topic, 0, 0, again.key, again.value, again.headers))
    assert replay is not None and not replay.outputs and replay.offsets == (0,)


def test_an_unreadable_record_is_skipped_without_raising(app: App) -> None:
    h = Harness(app, 1)
    done = h.joiner.add(Record(TOPIC, 0, 0, b"k", b"garbage", None))
    assert done is not None and done.offsets == (0,) and not done.outputs
    assert h.joiner.add(Record("other", 0, 0, b"k", b"x", None)) is None  # not assigned


def _record(app: App, env: Envelope) -> Record:
    value = app.codec.encode(app.envelope_schema, env.to_avro())
    return Record("unit.tasks.default", 0, 0, env.id.encode(), value, [])


def test_a_final_result_is_produced_only_after_what_depends_on_it(app: App) -> None:
    """A task id with a final result is skipped when redelivered, so its result must come
    after the next chain step, the chord outcome or the error callbacks (Outcome.then)."""
    h = Harness(app, 2)
    member = h.executor.run(_record(app, h.sent[0]))
    assert [o.topic for o in member.outputs] == [TOPIC]
    assert [o.topic for o in member.then] == ["unit.results"]

    t = app.tasks
    chain(t["add"].s(1, 2), t["add"].s(3)).publish("root")  # captured by the harness
    step = h.executor.run(_record(app, h.sent[-1]))
    assert [o.key for o in step.outputs] == [b"wf.root.1"]
    assert [o.key for o in step.then] == [b"wf.root.0"]

    failing = Envelope(
        id="t1",
        task="add",
        queue="default",
        args=b"garbage",
        link_error=(encode_step(app, t["on_error"].s()),),
    )
    dead = h.executor.run(_record(app, failing))  # undecodable arguments: dead-lettered
    assert dead.kind == "dead"
    assert [o.topic for o in dead.outputs] == ["unit.tasks.default.dlq", "unit.tasks.default"]
    assert [o.key for o in dead.then] == [b"t1"]
