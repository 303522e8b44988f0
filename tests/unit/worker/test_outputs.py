"""Outputs alone, on a fake producer: staged produce, acks, re-produce, shrinking."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

from confluent_kafka import KafkaError, Producer

from streamtasks.worker.outcomes import Output, Record
from streamtasks.worker.outputs import Job, Outputs

REC = Record("ns.tasks.q", 0, 3, b"k", b"v", [])


class FakeProducer:
    def __init__(self, full: int = 0) -> None:
        self.sent: list[tuple[str, bytes | None, Callable[..., None] | None]] = []
        self.full = full  # BufferError for the next `full` produce calls

    def produce(
        self, topic: str, *, value: Any, key: Any, headers: Any, on_delivery: Any = None
    ) -> None:
        if self.full:
            self.full -= 1
            raise BufferError
        self.sent.append((topic, value, on_delivery))

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
    )


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
