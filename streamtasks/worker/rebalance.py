"""What the worker does when partitions come and go, and when it stops: finish, commit, forget.

:class:`Rebalancing` is the part of :class:`~streamtasks.worker.worker.Worker` that runs in
the consumer's rebalance callbacks and in the shutdown drain, all on the poll thread:

* **assigned**: partitions get their trackers (a ``{ns}.chords`` partition its join state)
  and flow control, and the hooks hear of them;
* **revoked**: in-flight work of the partitions gets ``revoke_grace`` seconds, then what
  finished is committed and the rest forgotten (the new owner runs it again);
* **lost**: forgotten at once (another member owns them already: nothing may be committed);
* **drain** (shutdown): partitions paused, running tasks get ``shutdown_grace`` seconds,
  then what finished is committed; received tasks not started are left for the next owner.

Offsets are stored only from the trackers' unbroken runs of finished offsets
(:meth:`Rebalancing._store_offsets`), so a commit never passes an unfinished record.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from streamtasks.worker.health import StallWatch
from streamtasks.worker.hooks import HookSet
from streamtasks.worker.outputs import Job
from streamtasks.worker.partitions import Partitions
from streamtasks.worker.session import Session

__all__ = ["Rebalancing"]

log = structlog.get_logger("streamtasks.worker")

TP = tuple[str, int]


class Rebalancing:
    """The rebalance callbacks, the commits and the shutdown drain of a worker (a base class of
    :class:`~streamtasks.worker.worker.Worker`, which sets these attributes)."""

    _s: Session
    _parts: Partitions[Job]
    _hooks: HookSet
    _stalls: StallWatch
    _in_flight: int
    _abandoned: deque[Job]
    _no_output: deque[Job]
    _force: threading.Event
    _draining: threading.Event
    _starts_open: bool
    _close_starts: Callable[[threading.Event], None]
    _chords_topic: str
    revoke_grace: float
    shutdown_grace: float
    worker_id: str
    ready: threading.Event

    def _complete(self, job: Job, finished: bool) -> None:
        """Poll thread: ``job`` has an acknowledged outcome (or was abandoned)."""
        raise NotImplementedError

    def _store_offsets(self, only: Iterable[TP] | None = None) -> None:
        dirty = self._parts.take_dirty(only)
        if not dirty:
            return
        offsets = []
        for tp in dirty:
            tracker = self._parts.trackers.get(tp)
            if tracker is None:
                tracker = self._s.joiner.tracker(tp)
            pos = tracker.committable() if tracker is not None else None
            if pos is not None:
                offsets.append(TopicPartition(tp[0], tp[1], pos))
        if offsets:
            try:
                self._s.consumer.store_offsets(offsets=offsets)
            except KafkaException as exc:  # partition no longer assigned: the next owner redoes
                log.warning("could not store offsets", error=str(exc))
            else:
                self._hooks.committed([(p.topic, p.partition, p.offset) for p in offsets])

    # -- rebalance ------------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for p in partitions:
            tp = (p.topic, p.partition)
            chords = p.topic == self._chords_topic
            if chords:
                self._s.joiner.assigned(tp)
            self._parts.assign(tp, tracked=not chords)
        self._s.flow.assigned(partitions)
        if self._s.drain is not None:
            self._s.drain.assigned((p.topic, p.partition) for p in partitions)
        log.info("partitions assigned", partitions=_fmt(partitions), worker_id=self.worker_id)
        self._hooks.assigned([(p.topic, p.partition) for p in partitions])
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._wait_for(tps, self.revoke_grace)
        self._commit(tps)
        self._forget(tps)
        log.info("partitions revoked", partitions=_fmt(partitions), worker_id=self.worker_id)
        self._hooks.revoked(tps, lost=False)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._forget(tps)
        log.warning("partitions lost", partitions=_fmt(partitions), worker_id=self.worker_id)
        self._hooks.revoked(tps, lost=True)

    def _forget(self, tps: Iterable[TP]) -> None:
        gone = set(tps)
        for tp in gone:
            self._s.joiner.forget(tp)
            self._s.flow.forget(tp)
            self._stalls.forget(tp)
        if self._s.drain is not None:
            self._s.drain.forget(gone)
        queued = self._parts.forget(gone)
        self._in_flight -= queued  # never started: the new owner runs them
        self._hooks.abandoned(queued)

    def _wait_for(self, tps: Iterable[TP] | None, grace: float) -> None:
        """Serve delivery callbacks until the given partitions have nothing unfinished."""
        deadline = time.monotonic() + grace
        wanted = list(tps) if tps is not None else None

        def unfinished() -> int:
            if wanted is None:
                return self._in_flight
            return self._parts.unfinished(wanted)

        while unfinished() and time.monotonic() < deadline and not self._force.is_set():
            self._s.outputs.poll(0.02)  # sends the batch of task events first
            while self._abandoned:
                self._complete(self._abandoned.popleft(), finished=False)
            while self._no_output:
                self._complete(self._no_output.popleft(), finished=True)

    def _commit(self, tps: Iterable[TP] | None = None) -> None:
        self._parts.dirty.update(self._parts.trackers if tps is None else tps)
        self._store_offsets(tps)
        try:
            self._s.consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("commit failed", error=str(exc))

    # -- shutdown -------------------------------------------------------------------------
    def _drain_for_shutdown(self) -> None:
        consumer = self._s.consumer
        self._s.flow.pause_all()
        self._close_starts(self._draining)  # only running tasks finish; the rest is abandoned
        if self._in_flight:
            log.info("draining", in_flight=self._in_flight, grace=self.shutdown_grace)
        deadline = time.monotonic() + self.shutdown_grace
        while self._in_flight and time.monotonic() < deadline and not self._force.is_set():
            consumer.consume(100, 0.02)  # keeps the membership alive; paused, so none return
            self._wait_for(None, 0.05)
        if self._in_flight:  # still running after the grace: not committed, run again elsewhere
            log.warning("grace expired; abandoning running tasks", running=self._in_flight)
            self._hooks.abandoned(self._in_flight)
            self._in_flight = 0
        self._commit()
        # Nothing left to wait for: the revoke on close must not wait for abandoned offsets,
        # nor the close for threads of tasks past their grace.
        self._close_starts(self._force)


def _fmt(partitions: Sequence[TopicPartition]) -> list[str]:
    return [f"{p.topic}[{p.partition}]" for p in partitions]
