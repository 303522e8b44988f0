"""Outputs alone, on a fake producer: staged produce, acks, re-produce, shrinking, and the
batches of task event frames."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException, Producer

from streamtasks.wire.event_frames import AttemptFrames
from streamtasks.wire.events import TaskEventType, decode_events
from streamtasks.worker import outputs as outputs_mod
from streamtasks.worker.outcomes import Output, Record
from streamtasks.worker.outputs import Job, Outputs

REC = Record("ns.tasks.q", 0, 3, b"k", b"v", [])


class FakeProducer:
    def __init__(self, full: int = 0, max_bytes: int | None = None) -> None:
        self.sent: list[tuple[str, bytes | None, Callable[..., None] | None]] = []
        self.keys: list[bytes | None] = []
        self.full = full  # BufferError for the next `full` produce calls
        self.max_bytes = max_bytes  # larger values: MSG_SIZE_TOO_LARGE, as the client says

    def produce(
        self, topic: str, *, value: Any, key: Any, headers: Any, on_delivery: Any = None
    ) -> None:
        if self.full:
            self.full -= 1
            raise BufferError
        if self.max_bytes is not None and value is not None and len(value) > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.sent.append((topic, value, on_delivery))
        self.keys.append(key)

    def poll(self, timeout: float) -> int:
        return 0

    def ack(self, index: int, err: KafkaError | None = None) -> None:
        callback = self.sent[index][2]
        assert callback is not None
        callback(err, None)


def _done() -> list[tuple[Job, bool]]:
    return []


def _fatal() -> list[int]:
    return []


def _outputs(producer: FakeProducer, done: list[tuple[Job, bool]], fatal: list[int]) -> Outputs:
    return Outputs(
        cast(Producer, producer),
        results_topic="ns.results",
        refused=lambda out, detail: Output(out.topic, out.key, b"FAILURE", []),
        done=lambda job, finished: done.append((job, finished)),
        fatal=lambda: fatal.append(1),
        events_topic="ns.events",
        events_key=b"w-1",
    )


def _frames(task_id: str, n: int = 3) -> list[bytes]:
    attempt = AttemptFrames(task_id, "mod.add", "q", 1, "w-1", 0, 3)
    kinds = [TaskEventType.RECEIVED, TaskEventType.STARTED, TaskEventType.SUCCEEDED][:n]
    return [attempt.frame(kind, 1_000 + i) for i, kind in enumerate(kinds)]


def _ids_in(value: bytes | None) -> list[tuple[str, str]]:
    return [(e.task_id, e.type.value) for e in decode_events(value)]  # type: ignore[union-attr]


def test_then_is_produced_only_after_every_output_is_acknowledged() -> None:
    producer, done, fatal = FakeProducer(), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    job = Job(REC, 1)
    step = Output("ns.tasks.q", b"s", b"step", [])
    member = Output("ns.chords", b"c", b"member", [])
    final = Output("ns.results", b"r", b"result", [])
    assert outputs.start(job, (step, member), (final,))
    assert [s[1] for s in producer.sent] == [b"step", b"member"]
    producer.ack(1)
    assert len(producer.sent) == 2 and not done  # the final result waits for the step
    producer.ack(0)
    assert [s[1] for s in producer.sent] == [b"step", b"member", b"result"]
    assert not done
    producer.ack(2)
    assert done == [(job, True)] and not fatal


def test_nothing_to_produce_is_reported_to_the_caller() -> None:
    producer, done, fatal = FakeProducer(), _done(), _fatal()
    assert not _outputs(producer, done, fatal).start(Job(REC, 1), (), ())
    assert not producer.sent and not done


def test_an_unacknowledged_output_is_produced_again_and_a_full_queue_waited_out() -> None:
    producer, done, fatal = FakeProducer(full=2), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    job = Job(REC, 1)
    outputs.start(job, (Output("ns.results", b"r", b"result", []),), (), poll_thread=True)
    assert len(producer.sent) == 1
    producer.ack(0, KafkaError(KafkaError._MSG_TIMED_OUT))
    assert len(producer.sent) == 2 and not done
    producer.ack(1)
    assert done == [(job, True)]


def test_a_too_large_result_becomes_the_refused_stand_in_and_a_dead_letter_loses_its_value() -> (
    None
):
    producer, done, fatal = FakeProducer(), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    job = Job(REC, 1)
    result = Output("ns.results", b"r", b"x" * 100, [])
    letter = Output("ns.tasks.q.dlq", b"k", b"y" * 100, [])
    outputs.start(job, (result, letter), ())
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE)
    producer.ack(0, too_large)
    producer.ack(1, too_large)
    assert [s[1] for s in producer.sent[2:]] == [b"FAILURE", None]
    producer.ack(2)
    producer.ack(3)
    assert done == [(job, True)]


def test_a_fatal_error_stops_and_reports_the_job_unfinished() -> None:
    producer, done, fatal = FakeProducer(), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    job = Job(REC, 1)
    outputs.start(job, (Output("ns.results", b"r", b"v", []),), ())
    producer.ack(0, KafkaError(KafkaError._FATAL, "fatal", fatal=True))
    assert fatal == [1] and done == [(job, False)]


def test_the_events_of_many_jobs_go_in_one_record_whose_ack_finishes_each_job() -> None:
    producer, done, fatal = FakeProducer(), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    jobs = [Job(REC, 1) for _ in range(3)]
    # Given three jobs, each with a result and its events
    for i, job in enumerate(jobs):
        result = Output("ns.results", b"r", f"result-{i}".encode(), [])
        assert outputs.start(job, (result,), (), events=_frames(f"t-{i}"))
    # Then the results go at once, the events wait for the poll thread's next turn
    assert [s[0] for s in producer.sent] == ["ns.results"] * 3
    outputs.poll(0)
    assert [s[0] for s in producer.sent] == ["ns.results"] * 3 + ["ns.events"]
    assert producer.keys[3] == b"w-1"
    assert _ids_in(producer.sent[3][1]) == [
        (f"t-{i}", kind) for i in range(3) for kind in ("RECEIVED", "STARTED", "SUCCEEDED")
    ]
    outputs.poll(0)  # nothing more to send
    assert len(producer.sent) == 4
    # When the results are acknowledged, no job is finished: their events are not yet
    for i in range(3):
        producer.ack(i)
    assert not done
    # and the batch's acknowledgement finishes all three
    producer.ack(3)
    assert done == [(job, True) for job in jobs] and not fatal


def test_a_staged_result_waits_for_the_batch_that_carries_its_events() -> None:
    producer, done, fatal = FakeProducer(), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    job = Job(REC, 1)
    step = Output("ns.tasks.q", b"s", b"step", [])
    final = Output("ns.results", b"r", b"result", [])
    outputs.start(job, (step,), (final,), events=_frames("t-1"))
    outputs.poll(0)
    assert [s[1] for s in producer.sent][:1] == [b"step"] and len(producer.sent) == 2
    producer.ack(0)
    assert len(producer.sent) == 2  # the step alone is not enough
    producer.ack(1)  # the events' batch
    assert producer.sent[2][1] == b"result" and not done
    producer.ack(2)
    assert done == [(job, True)]
    # a job with events only: the batch's ack is all it waits for
    only = Job(REC, 1)
    assert outputs.start(only, (), (), events=_frames("t-2"))
    outputs.poll(0)
    producer.ack(3)
    assert done[-1] == (only, True)


def test_a_full_batch_goes_at_once_and_a_job_s_frames_are_never_split(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(outputs_mod, "BATCH_FRAMES", 4)
    producer, done, fatal = FakeProducer(), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    first, second = Job(REC, 1), Job(REC, 1)
    outputs.start(first, (), (), events=_frames("t-1"))
    assert not producer.sent  # 3 frames: not full
    outputs.start(second, (), (), events=_frames("t-2"))
    assert len(producer.sent) == 1  # 6 frames: sent by the thread that filled it
    assert len(_ids_in(producer.sent[0][1])) == 6
    producer.ack(0)
    assert done == [(first, True), (second, True)]


def test_a_batch_too_large_is_split_at_job_boundaries_and_an_unsendable_job_is_not_stranded() -> (
    None
):
    # Given a producer that refuses values over the size of two jobs' events
    frames = {f"t-{i}": _frames(f"t-{i}") for i in range(4)}
    two = len(outputs_mod.batch_frame([*frames["t-0"], *frames["t-1"]]))
    producer, done, fatal = FakeProducer(max_bytes=two), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    jobs = {tid: Job(REC, 1) for tid in frames}
    for tid, job in jobs.items():
        outputs.start(job, (), (), events=frames[tid])
    outputs.poll(0)
    # Then it went as two records, each holding whole jobs
    assert [sorted({t for t, _ in _ids_in(s[1])}) for s in producer.sent] == [
        ["t-0", "t-1"],
        ["t-2", "t-3"],
    ]
    # and a refusal by the broker splits again; a single job refused is logged and finished
    producer.ack(0, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert [_ids_in(s[1])[0][0] for s in producer.sent[2:]] == ["t-0", "t-1"]
    producer.ack(2, KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    assert done == [(jobs["t-0"], True)]
    producer.ack(1)
    producer.ack(3)
    assert {id(j) for j, ok in done if ok} == {id(j) for j in jobs.values()} and not fatal


def test_an_unacknowledged_batch_is_produced_again_and_a_fatal_error_fails_its_jobs() -> None:
    producer, done, fatal = FakeProducer(), _done(), _fatal()
    outputs = _outputs(producer, done, fatal)
    job = Job(REC, 1)
    outputs.start(job, (), (), events=_frames("t-1"))
    outputs.poll(0)
    producer.ack(0, KafkaError(KafkaError._MSG_TIMED_OUT))
    assert len(producer.sent) == 2 and producer.sent[1][1] == producer.sent[0][1] and not done
    producer.ack(1, KafkaError(KafkaError._FATAL, "fatal", fatal=True))
    assert fatal == [1] and done == [(job, False)]


def test_batches_go_to_the_events_producer_which_poll_serves_too() -> None:
    # Given outputs with a producer of its own for the task events
    producer, events, done, fatal = FakeProducer(), FakeProducer(), _done(), _fatal()
    polled: list[str] = []
    producer.poll = lambda timeout: polled.append("outputs") or 0  # type: ignore[method-assign]
    events.poll = lambda timeout: polled.append("events") or 0  # type: ignore[method-assign]
    outputs = Outputs(
        cast(Producer, producer),
        results_topic="ns.results",
        refused=lambda out, detail: None,
        done=lambda job, finished: done.append((job, finished)),
        fatal=lambda: fatal.append(1),
        events_topic="ns.events",
        events_key=b"w-1",
        events_producer=cast(Producer, events),
    )
    job = Job(REC, 1)
    outputs.start(job, (Output("ns.results", b"r", b"result", []),), (), events=_frames("t-1"))
    outputs.poll(0)
    # Then the result went to the outputs' producer, the batch to the events' one
    assert [s[0] for s in producer.sent] == ["ns.results"]
    assert [s[0] for s in events.sent] == ["ns.events"]
    assert polled == ["events", "outputs"]  # both served on the poll thread's turn
    producer.ack(0)
    events.ack(0)
    assert done == [(job, True)] and not fatal
