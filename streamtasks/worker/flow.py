"""Flow control of a worker's partitions: why each one is paused and when it may fetch again.

Four independent reasons pause a partition, and a partition fetches only when none holds:

* **full** — the worker's whole in-flight window is full (all partitions). The poll loop
  simply takes no records while full; only a window that stays full for a while pauses,
  because a paused partition drops its prefetched records and fetches again late (~1 s
  measured) after resume;
* **hot** — this partition alone has too many unfinished records (say, a long chain of one
  key), so it cannot take the whole window from the others;
* **held** — a retry-tier partition whose next record is not due yet (paused and rewound to
  that record, which is fetched again when due);
* **resting** — a retry-tier partition that fetched nothing for a while (``awake_s``) sits
  out the next ``rest_s``, then fetches again. A consumer fetches all its unpaused partitions
  in every request; most tier partitions are empty, and an empty one still costs the broker
  per request (on the embedded broker, at a 10 ms fetch wait, 36 idle partitions cost 45 %
  of a core against 13 % for 6). A retry written meanwhile is picked up at most ``rest_s``
  later, which the caller keeps small against the tier's own delay. Nothing is skipped: a
  paused partition fetches on from where it stopped.

Invariants: :meth:`PartitionFlow.resume` never resumes a partition that another reason still
holds paused; a partition this class forgot (revoked) is never left paused when it is assigned
again — librdkafka keeps a partition's pause across a rebalance, so each assignment starts
from no reason at all and is resumed (:meth:`PartitionFlow.settle`) unless the window is full.
Only the worker's poll thread calls into this class.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from confluent_kafka import Consumer, TopicPartition

__all__ = ["PAUSE_AFTER_FULL_S", "PartitionFlow"]

TP = tuple[str, int]
PAUSE_AFTER_FULL_S = 1.0


class PartitionFlow:
    def __init__(
        self,
        consumer: Consumer,
        *,
        max_in_flight: int,
        per_partition: int,
        rest_topics: Iterable[str] = (),
        rest_s: float = 0.0,
        awake_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._consumer = consumer
        self.max_in_flight = max_in_flight
        self.per_partition = per_partition
        self.paused = False  # all partitions: full for a while, or shutting down
        self._full_since: float | None = None
        self._held: dict[TP, int] = {}  # due time (epoch ms) of the record held at
        self._hot: set[TP] = set()
        self._assigned: set[TP] = set()  # to resume once the assignment took effect
        # resting: only where it pays, a rest longer than the time it takes to see a fetch
        self._rest_topics = frozenset(rest_topics) if rest_s > awake_s > 0 else frozenset()
        self._rest_s, self._awake_s, self._clock = rest_s, awake_s, clock
        self._awake: dict[TP, float] = {}  # fetchable, nothing received since (monotonic)
        self._resting: dict[TP, float] = {}  # fetches again at (monotonic)
        self._next_rest_check = 0.0

    # -- held (retry tiers) ----------------------------------------------------------------
    def is_held(self, tp: TP) -> bool:
        return tp in self._held

    def hold(self, tp: TP, offset: int, due_ms: int) -> None:
        """Keep ``tp`` at ``offset`` until ``due_ms`` without blocking other partitions."""
        part = TopicPartition(tp[0], tp[1], offset)
        self._consumer.pause([part])
        self._consumer.seek(part)
        self._held[tp] = due_ms

    def holding(self) -> bool:
        """Is any partition held for a record not due yet?"""
        return bool(self._held)

    def release_due(self, now_ms: int) -> None:
        if not self._held:
            return
        due = [tp for tp, when in self._held.items() if when <= now_ms]
        for tp in due:
            del self._held[tp]
        self.resume(due)

    def idle_timeout(self, now_ms: int, default: float = 0.1) -> float:
        """How long an idle poll may block: until the next held record is due, at most."""
        if not self._held:
            return default
        wait = (min(self._held.values()) - now_ms) / 1000
        return max(0.001, min(default, wait))

    # -- hot partitions ---------------------------------------------------------------------
    def received(self, tp: TP, unfinished: int) -> None:
        if tp in self._awake:
            self._awake[tp] = self._clock()
        elif self._resting and tp in self._resting:  # fetched just before it was paused
            del self._resting[tp]
            self.resume([tp])
        if unfinished >= self.per_partition and tp not in self._hot:
            self._hot.add(tp)
            self._consumer.pause([TopicPartition(tp[0], tp[1])])

    def finished(self, tp: TP, unfinished: int) -> None:
        if tp in self._hot and unfinished <= self.per_partition // 2:
            self._hot.discard(tp)
            self.resume([tp])

    # -- the whole window -------------------------------------------------------------------
    def window(self, in_flight: int, *, may_resume: bool = True) -> None:
        """Pause all when full for :data:`PAUSE_AFTER_FULL_S`; resume when half drained."""
        full = in_flight >= self.max_in_flight
        now = time.monotonic()
        if not full:
            self._full_since = None
        elif self._full_since is None:
            self._full_since = now
        if not self.paused and full and now - (self._full_since or now) >= PAUSE_AFTER_FULL_S:
            self.pause_all()
        elif self.paused and may_resume and in_flight <= self.max_in_flight // 2:
            self.paused = False
            self.resume((p.topic, p.partition) for p in self._consumer.assignment())

    def pause_all(self) -> None:
        if not self.paused:
            self._consumer.pause(self._consumer.assignment())
            self.paused = True

    # -- resting (idle retry tiers) ---------------------------------------------------------
    def rest(self) -> None:
        """Wake the resting partitions whose rest is over; rest the ones idle for
        ``awake_s`` (called from the poll loop)."""
        if not self._rest_topics:
            return
        now = self._clock()
        if now < self._next_rest_check:  # called every loop: look twice per awake time
            return
        self._next_rest_check = now + self._awake_s / 2
        if self._resting:
            due = [tp for tp, when in self._resting.items() if when <= now]
            for tp in due:
                del self._resting[tp]
            self.resume(due)
        if self.paused:
            return
        idle = [
            tp
            for tp, since in self._awake.items()
            if now - since >= self._awake_s and tp not in self._held and tp not in self._hot
        ]
        if idle:
            self._consumer.pause([TopicPartition(t, p) for t, p in idle])
            for tp in idle:
                del self._awake[tp]
                self._resting[tp] = now + self._rest_s

    def resting(self) -> frozenset[TP]:
        return frozenset(self._resting)

    # -- shared ---------------------------------------------------------------------------
    def resume(self, tps: Iterable[TP]) -> None:
        """Resume the partitions that no other reason keeps paused."""
        if self.paused:
            return
        ready = [
            (t, p)
            for t, p in tps
            if (t, p) not in self._held and (t, p) not in self._hot and (t, p) not in self._resting
        ]
        if ready:
            self._consumer.resume([TopicPartition(t, p) for t, p in ready])
            if self._rest_topics:
                self._wake([tp for tp in ready if tp[0] in self._rest_topics])

    def _wake(self, tps: Iterable[TP]) -> None:
        now = self._clock()
        for tp in tps:
            self._awake[tp] = now

    def assigned(self, partitions: list[TopicPartition]) -> None:
        """New partitions start with no hold of their own; paused only if the window is."""
        for p in partitions:
            self.forget((p.topic, p.partition))
            self._assigned.add((p.topic, p.partition))
        if not partitions:
            return
        if self.paused:
            self._consumer.pause(partitions)
        else:
            # librdkafka keeps a partition paused across unassign/assign: one that was hot or
            # held when it was revoked or lost (e.g. a session timeout while the broker was
            # down) would otherwise never fetch again once it is assigned back.
            self._consumer.resume(partitions)

    def settle(self) -> None:
        """Resume what was assigned since the last call (the rebalance callback is too early:
        the assignment takes effect after it returns), unless a reason holds it since."""
        if self._assigned and not self.paused:
            tps, self._assigned = self._assigned, set()
            self.resume(tps)

    def forget(self, tp: TP) -> None:
        self._awake.pop(tp, None)
        self._resting.pop(tp, None)
        self._held.pop(tp, None)
        self._hot.discard(tp)
        self._assigned.discard(tp)
