"""Producing a record's outputs and seeing them acknowledged: staged produce, acks, re-produce.

A :class:`Job` is one consumed record in flight. Its outcome's outputs are handed to the
worker's producer by :meth:`Outputs.start` (from a task thread, or the poll thread for a chord
completion); each delivery report arrives on the poll thread, the only thread that polls the
producer, and once every output of the job is acknowledged the worker is told (``done``).
A job's task event frames (per-task events on) are not records of their own: they join the
current batch, and one ``TaskEventBatch`` record carries the events of every job in it
(:meth:`Outputs.poll` sends it, the poll thread's every turn; a full batch goes at once). Its
acknowledgement counts as one output of each of those jobs.

Invariants:

1. **staged**: an outcome's ``then`` outputs (a final result) are produced only after every
   one of its ``outputs`` was acknowledged (see :class:`~streamtasks.worker.outcomes.Outcome`);
2. an output is **never given up**: a record's offset cannot finish without it. A full local
   queue is waited out, a refused or unacknowledged output is produced again; one too large
   for the client or broker becomes smaller (a result becomes the task's FAILURE, a dead
   letter drops its value) rather than lost;
3. ``done(job, True)`` is called exactly once per job whose outputs were all acknowledged, on
   the poll thread; a fatal producer error calls ``fatal()`` then ``done(job, False)``;
4. a job's event frames are all in one batch record (one acknowledgement per job), and a
   batch waits at most until the poll thread's next :meth:`Outputs.poll`: every wait for
   acknowledgements (the poll loop, a revocation, the shutdown drain) goes through it.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence

import structlog
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from streamtasks.kafka.delivery import OnDelivery, produce_with_room
from streamtasks.wire import headers as hdr
from streamtasks.wire.event_frames import batch_frame
from streamtasks.wire.events import KIND_TASK_BATCH
from streamtasks.worker.outcomes import Outcome, Output, Record

__all__ = ["Job", "Outputs"]

log = structlog.get_logger("streamtasks.worker")

TP = tuple[str, int]

#: seconds a wait for room in a full producer queue lasts, by "on the poll thread": the poll
#: thread serves the callbacks meanwhile; a task thread sleeps until the poll thread made room
_ROOM_WAIT = {True: 0.05, False: 0.005}
#: a batch of task event frames goes out at once when it holds this many frames or bytes
#: (well under the 1 MB record limits of the client and the broker)
BATCH_FRAMES = 2000
BATCH_BYTES = 256 * 1024

_BATCH_HEADERS: hdr.HeaderList = [(hdr.KIND, KIND_TASK_BATCH.encode())]
#: the jobs of one batch record and each one's frames
_Entries = list[tuple["Job", Sequence[bytes]]]


class Job:
    """A consumed record in flight, from admission until its outputs are acknowledged.

    A plain class with slots (made per task: its ``__init__`` is one of the worker's per-task
    costs); compared by identity."""

    __slots__ = (
        "detail",
        "generation",
        "joins",
        "outcome",
        "preset",
        "received_ms",
        "record",
        "runtime",
        "then",
        "tp",
        "unacked",
    )

    def __init__(
        self,
        record: Record,
        generation: int,
        *,
        outcome: str = "pending",
        joins: tuple[int, ...] = (),
        preset: Callable[[], Outcome] | None = None,
    ) -> None:
        self.record = record
        self.generation = generation
        self.tp: TP = (record.topic, record.partition)
        self.outcome = outcome
        self.unacked = 0  # outputs not yet acknowledged; set before the first is produced
        self.then: tuple[Output, ...] = ()  # produced once every earlier output is acked
        self.joins = joins  # a chord completion: the chord records' offsets it finishes
        self.preset = preset  # decided on the poll thread: no task run
        self.received_ms = 0  # when the poll thread took it (set only with task events on)
        self.runtime: float | None = None  # seconds its task thread spent on it (for hooks)
        self.detail: str | None = None  # the outcome's retry tier or dead-letter reason

    def __repr__(self) -> str:
        return f"Job({self.record!r}, {self.generation}, outcome={self.outcome!r})"


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
        events_topic: str = "",
        events_key: bytes | None = None,
        events_producer: Producer | None = None,
    ) -> None:
        """``refused``: the smaller stand-in of a result the broker refused as too large;
        ``done(job, finished)``: on the poll thread; ``fatal``: a fatal producer error;
        ``seen``: every acknowledged output's position (burst mode reads its own outputs);
        ``events_topic`` / ``events_key``: where batches of task event frames go (the
        worker's id as the key keeps one worker's batches in order); ``events_producer``:
        the producer they go with (default: ``producer``), polled by :meth:`poll` too."""
        self._producer = producer
        self._results_topic = results_topic
        self._refused = refused
        self._done = done
        self._fatal = fatal
        self._seen = seen
        self._events_topic = events_topic
        self._events_key = events_key
        self._events_producer = events_producer or producer
        self._batch_lock = threading.Lock()
        self._batch: _Entries = []
        self._batch_frames = 0
        self._batch_bytes = 0

    def start(
        self,
        job: Job,
        outputs: tuple[Output, ...],
        then: tuple[Output, ...],
        *,
        events: Sequence[bytes] = (),
        poll_thread: bool = False,
    ) -> bool:
        """Produce ``outputs`` and batch the task event frames ``events``; ``then`` follows
        once they are all acknowledged (see :class:`Outcome`). False if there is nothing to
        produce."""
        if not events:
            first = outputs or then
            job.then = then if outputs else ()
            job.unacked = len(first)  # before producing: acks may arrive at once
            for output in first:
                self._produce(job, output, poll_thread=poll_thread)
            return bool(first)
        job.then = then
        job.unacked = len(outputs) + 1  # the outputs and the batch that carries the events
        for output in outputs:
            self._produce(job, output, poll_thread=poll_thread)
        if self._add_events(job, events):
            self._send_batch(poll_thread=poll_thread)
        return True

    # -- batches of task event frames ---------------------------------------------------------
    def _add_events(self, job: Job, frames: Sequence[bytes]) -> bool:
        """Any thread: ``job``'s frames join the batch; True when the batch is full."""
        size = sum(len(f) for f in frames)
        with self._batch_lock:
            self._batch.append((job, frames))
            self._batch_frames += len(frames)
            self._batch_bytes += size
            return self._batch_frames >= BATCH_FRAMES or self._batch_bytes >= BATCH_BYTES

    def _send_batch(self, *, poll_thread: bool) -> None:
        """Produce the current batch (if any) as one record."""
        with self._batch_lock:
            entries, self._batch = self._batch, []
            self._batch_frames = self._batch_bytes = 0
        if entries:
            self._produce_batch(entries, poll_thread=poll_thread)

    def _produce_batch(self, entries: _Entries, *, poll_thread: bool) -> None:
        frames = [f for _, job_frames in entries for f in job_frames]
        out = Output(self._events_topic, self._events_key, batch_frame(frames), _BATCH_HEADERS)
        while True:
            try:
                on_delivery = functools.partial(self._on_batch_delivered, entries)
                self._enqueue(out, on_delivery, poll_thread=poll_thread, to=self._events_producer)
                return
            except KafkaException as exc:
                err: KafkaError = exc.args[0]
                if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
                    self._split(entries, err, poll_thread=poll_thread)
                    return
                log.error("could not produce task events; trying again", error=err.str())
                time.sleep(0.5)

    def _split(self, entries: _Entries, err: KafkaError, *, poll_thread: bool) -> None:
        """A batch too large for the client or broker: in two halves, at job boundaries; one
        job's own events too large to write at all are logged and counted as written (its
        outcome must not wait forever for them)."""
        if len(entries) == 1:
            job, frames = entries[0]
            log.error(
                "task events too large to write; dropped",
                events=len(frames),
                size=sum(len(f) for f in frames),
                error=err.str(),
                **job.record.log_fields(),
            )
            self._ack(job)
            return
        half = len(entries) // 2
        self._produce_batch(entries[:half], poll_thread=poll_thread)
        self._produce_batch(entries[half:], poll_thread=poll_thread)

    def _on_batch_delivered(
        self, entries: _Entries, err: KafkaError | None, _msg: Message | None = None
    ) -> None:
        """Poll thread (delivery callback of a batch record)."""
        if err is None:
            if self._seen is not None and _msg is not None:
                self._seen((str(_msg.topic()), int(_msg.partition() or 0)), int(_msg.offset() or 0))
            for job, _ in entries:
                self._ack(job)
            return
        log.error("task events not acknowledged; producing again", error=err.str())
        if err.fatal():
            self._fatal()
            for job, _ in entries:
                self._done(job, False)
            return
        if err.code() == KafkaError.MSG_SIZE_TOO_LARGE:
            self._split(entries, err, poll_thread=True)
            return
        self._produce_batch(entries, poll_thread=True)

    def poll(self, timeout: float) -> None:
        """Poll thread: send the batch of task events, then serve delivery reports (up to
        ``timeout`` seconds) — every wait for acknowledgements goes through here."""
        if self._batch:
            self._send_batch(poll_thread=True)
        if self._events_producer is not self._producer:
            self._events_producer.poll(0)
        self._producer.poll(timeout)

    def _produce(self, job: Job, out: Output, *, poll_thread: bool = False) -> None:
        """Hand an output to the producer; the poll thread sees the ack.

        Never gives up on an output: the record's offset cannot finish without it. Only the
        poll thread may serve callbacks while it waits for room in the producer's queue.
        """
        on_delivery = functools.partial(self._on_delivered, job, out)
        try:  # the common case first, without the loop's calls: there is room
            self._producer.produce(
                out.topic,
                value=out.value,
                key=out.key,
                headers=out.headers,
                on_delivery=on_delivery,
            )
            return
        except (BufferError, KafkaException):
            pass  # no room, or refused: the loop below waits, retries or shrinks it
        while True:
            try:
                on_delivery = functools.partial(self._on_delivered, job, out)
                self._enqueue(out, on_delivery, poll_thread=poll_thread)
                return
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
        self._enqueue(out, None, poll_thread=False)

    def _enqueue(
        self,
        out: Output,
        on_delivery: OnDelivery | None,
        *,
        poll_thread: bool,
        to: Producer | None = None,
    ) -> None:
        """Into the producer's queue (``to``: another one), waiting for room the way this
        thread may."""
        produce_with_room(
            self._producer if to is None else to,
            out.topic,
            out.value,
            key=out.key,
            headers=out.headers,
            on_delivery=on_delivery,
            poll=poll_thread,
            wait=_ROOM_WAIT[poll_thread],
        )

    def _on_delivered(
        self, job: Job, out: Output, err: KafkaError | None, _msg: Message | None = None
    ) -> None:
        """Poll thread (delivery callback)."""
        if err is None and self._seen is not None and _msg is not None:
            self._seen((str(_msg.topic()), int(_msg.partition() or 0)), int(_msg.offset() or 0))
        if err is None:
            self._ack(job)
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

    def _ack(self, job: Job) -> None:
        """Poll thread: one of ``job``'s outputs was acknowledged."""
        job.unacked -= 1
        if job.unacked == 0:
            if job.then:  # the outputs that must come last (a final result)
                self.start(job, job.then, (), poll_thread=True)
                return
            self._done(job, True)


def _without_value(out: Output, err: KafkaError) -> Output:
    """The output with its value dropped (a dead letter the DLQ topic cannot hold whole)."""
    assert out.value is not None
    note = f"{len(out.value)} bytes dropped: {err.str()}"
    return Output(out.topic, out.key, None, [*out.headers, (hdr.VALUE_DROPPED, note.encode())])
