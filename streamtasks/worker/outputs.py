"""Producing a record's outputs and seeing them acknowledged: staged produce, acks, re-produce.

A :class:`Job` is one consumed record in flight. Its outcome's outputs are handed to the
worker's producer by :meth:`Outputs.start` (from a task thread, or the poll thread for a chord
completion); each delivery report arrives on the poll thread, the only thread that polls the
producer, and once every output of the job is acknowledged the worker is told (``done``).

Invariants:

1. **staged**: an outcome's ``then`` outputs (a final result) are produced only after every
   one of its ``outputs`` was acknowledged (see :class:`~streamtasks.worker.outcomes.Outcome`);
2. an output is **never given up**: a record's offset cannot finish without it. A full local
   queue is waited out, a refused or unacknowledged output is produced again; one too large
   for the client or broker becomes smaller (a result becomes the task's FAILURE, a dead
   letter drops its value) rather than lost;
3. ``done(job, True)`` is called exactly once per job whose outputs were all acknowledged, on
   the poll thread; a fatal producer error calls ``fatal()`` then ``done(job, False)``.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamtasks.worker.outcomes import Outcome, Output, Record

__all__ = ["Job", "Outputs"]

log = structlog.get_logger("streamtasks.worker")

TP = tuple[str, int]


@dataclass(slots=True, eq=False)
class Job:
    """A consumed record in flight, from admission until its outputs are acknowledged."""

    record: Record
    generation: int
    outcome: str = "pending"
    unacked: int = 0  # outputs not yet acknowledged; set before the first is produced
    then: tuple[Output, ...] = ()  # produced once every earlier output is acknowledged
    joins: tuple[int, ...] = ()  # a chord completion: the chord records' offsets it finishes
    preset: Callable[[], Outcome] | None = None  # decided on the poll thread: no task run
    runtime: float | None = None  # seconds its task thread spent on it (for hooks)
    detail: str | None = None  # the outcome's retry tier or dead-letter reason (for hooks)
    received_ms: int = 0  # when the poll thread took it (set only with task events on)

    @property
    def tp(self) -> TP:
        return (self.record.topic, self.record.partition)


class Outputs:
    """Produces jobs' outputs on one producer and reports each job whose outputs are acked."""

    def __init__(
        self,
        producer: Producer,
        *,
        results_topic: str,
        refused: Callable[[Output, str], Output | None],
        done: Callable[[Job, bool], None],
        fatal: Callable[[], None],
        seen: Callable[[TP, int], None] | None = None,
    ) -> None:
        """``refused``: the smaller stand-in of a result the broker refused as too large;
        ``done(job, finished)``: on the poll thread; ``fatal``: a fatal producer error;
        ``seen``: every acknowledged output's position (burst mode reads its own outputs)."""
        self._producer = producer
        self._results_topic = results_topic
        self._refused = refused
        self._done = done
        self._fatal = fatal
        self._seen = seen

    def start(
        self,
        job: Job,
        outputs: tuple[Output, ...],
        then: tuple[Output, ...],
        *,
        poll_thread: bool = False,
    ) -> bool:
        """Produce ``outputs``; ``then`` follows once they are all acknowledged (see
        :class:`Outcome`). False if there is nothing to produce."""
        first = outputs or then
        job.then = then if outputs else ()
        job.unacked = len(first)  # before producing: acks may arrive at once
        for output in first:
            self._produce(job, output, poll_thread=poll_thread)
        return bool(first)

    def _produce(self, job: Job, out: Output, *, poll_thread: bool = False) -> None:
        """Hand an output to the producer; the poll thread sees the ack.

        Never gives up on an output: the record's offset cannot finish without it. Only the
        poll thread may serve callbacks while it waits for room in the producer's queue.
        """
        producer = self._producer
        while True:
            try:
                producer.produce(
                    out.topic,
                    value=out.value,
                    key=out.key,
                    headers=out.headers,
                    on_delivery=functools.partial(self._on_delivered, job, out),
                )
                return
            except BufferError:
                if poll_thread:
                    producer.poll(0.05)
                else:
                    time.sleep(0.005)
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and out.value is not None:
                    out = self._smaller(out, err)
                    continue
                log.error(
                    "could not produce an output; trying again",
                    error=err.str(),
                    to=out.topic,
                    **job.record.log_fields(),
                )
                time.sleep(0.5)

    def _smaller(self, out: Output, err: KafkaError) -> Output:
        """An output refused as too large: a result becomes the task's FAILURE (get() must
        not wait forever), a dead letter drops its value."""
        if out.topic == self._results_topic:
            refused = self._refused(out, err.str())
            if refused is not None:
                return refused
        return _without_value(out, err)

    def produce_untracked(self, out: Output) -> None:
        """Task thread: an informational output (STARTED) no offset waits for."""
        producer = self._producer
        while True:
            try:
                producer.produce(out.topic, value=out.value, key=out.key, headers=out.headers)
                return
            except BufferError:
                time.sleep(0.005)

    def _on_delivered(
        self, job: Job, out: Output, err: KafkaError | None, _msg: Message | None = None
    ) -> None:
        """Poll thread (delivery callback)."""
        if err is None and self._seen is not None and _msg is not None:
            self._seen((str(_msg.topic()), int(_msg.partition() or 0)), int(_msg.offset() or 0))
        if err is None:
            job.unacked -= 1
            if job.unacked == 0:
                if job.then:  # the outputs that must come last (a final result)
                    self.start(job, job.then, (), poll_thread=True)
                    return
                self._done(job, True)
            return
        log.error(
            "output not acknowledged; producing again",
            error=err.str(),
            to=out.topic,
            **job.record.log_fields(),
        )
        if err.fatal():
            self._fatal()
            self._done(job, False)
            return
        if err.code() == KafkaError.MSG_SIZE_TOO_LARGE and out.value is not None:
            out = self._smaller(out, err)
        self._produce(job, out, poll_thread=True)


def _without_value(out: Output, err: KafkaError) -> Output:
    """The output with its value dropped (a dead letter the DLQ topic cannot hold whole)."""
    assert out.value is not None
    note = f"{len(out.value)} bytes dropped: {err.str()}"
    return Output(out.topic, out.key, None, [*out.headers, ("st-value-dropped", note.encode())])
