"""Per-partition state of a worker: offset trackers, generations and per-key queues; no I/O.

Owned and used by the poll thread only (task threads read :meth:`Partitions.current`, a
dict lookup). What it keeps, per assigned partition:

* an :class:`~streamtasks.worker.tracker.OffsetTracker` (task partitions only; the chords
  partition's offsets are tracked by the :class:`~streamtasks.worker.chords.ChordJoiner`);
* a **generation**, new on every assignment: work admitted under an older generation (the
  partition was revoked, maybe assigned back, meanwhile) never finishes an offset of the new
  one, so a stale completion cannot commit past an offset the new assignment has not finished;
* for each record key with a task in flight, the queue of later records of that key, run one
  at a time in offset order;
* whether the partition has offsets newly finished since they were last stored (``dirty``).

Invariants: an offset is admitted at most once per assignment (a re-delivery of one already
seen is refused); :meth:`Partitions.forget` drops everything of a partition, and reports how
many queued records it dropped (they never started: the next owner runs them).
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable
from typing import Generic, TypeVar

from streamtasks.worker.tracker import OffsetTracker

__all__ = ["TP", "Partitions"]

TP = tuple[str, int]
J = TypeVar("J")


class Partitions(Generic[J]):
    """The assigned partitions' trackers, generations and key queues (of jobs ``J``)."""

    def __init__(self) -> None:
        self.trackers: dict[TP, OffsetTracker] = {}
        self._generation: dict[TP, int] = {}
        self._generations = itertools.count(1)
        #: busy keys: the jobs queued behind the running one (None: none queued, the usual
        #: case, so a key that is never contended costs no queue)
        self._keys: dict[tuple[TP, bytes], deque[J] | None] = {}
        self.dirty: set[TP] = set()

    # -- assignment -----------------------------------------------------------------------
    def assign(self, tp: TP, *, tracked: bool = True) -> int:
        """A partition was assigned: a new generation (and a fresh tracker if ``tracked``)."""
        if tracked:
            self.trackers[tp] = OffsetTracker()
        generation = self._generation[tp] = next(self._generations)
        return generation

    def generation(self, tp: TP) -> int:
        """The current generation of an assigned partition (KeyError if not assigned)."""
        return self._generation[tp]

    def current(self, tp: TP, generation: int) -> bool:
        """Whether work admitted under ``generation`` still belongs to the assignment."""
        return self._generation.get(tp) == generation

    def forget(self, tps: Iterable[TP]) -> int:
        """Drop all state of these partitions; returns how many queued (unstarted) jobs went."""
        gone = set(tps)
        for tp in gone:
            self.trackers.pop(tp, None)
            self._generation.pop(tp, None)
            self.dirty.discard(tp)
        dropped = 0
        for kk in [kk for kk in self._keys if kk[0] in gone]:
            dropped += len(self._keys.pop(kk) or ())
        return dropped

    # -- offsets --------------------------------------------------------------------------
    def admit(self, tp: TP, offset: int) -> OffsetTracker | None:
        """Take a received offset; None if the partition is not ours or the offset was seen."""
        tracker = self.trackers.get(tp)
        if tracker is None or not tracker.add(offset):
            return None
        return tracker

    def complete(self, tp: TP, offset: int) -> OffsetTracker:
        """A current job's offset finished (its outcome acknowledged)."""
        tracker = self.trackers[tp]
        if tracker.finish(offset):
            self.dirty.add(tp)
        return tracker

    def unfinished(self, tps: Iterable[TP]) -> int:
        """Received offsets of these partitions that are not finished."""
        wanted = set(tps)
        return sum(t.unfinished for tp, t in self.trackers.items() if tp in wanted)

    def take_dirty(self, only: Iterable[TP] | None = None) -> set[TP]:
        """The partitions with newly finished offsets (of ``only``), no longer marked."""
        dirty = set(self.dirty) if only is None else self.dirty.intersection(only)
        self.dirty.difference_update(dirty)
        return dirty

    # -- key queues -----------------------------------------------------------------------
    def queue_behind_key(self, tp: TP, key: bytes | None, job: J) -> bool:
        """True if a job of ``key`` is in flight: ``job`` is queued to run after it. False: it
        may run now (and ``key``, if any, is marked busy until :meth:`next_of_key`)."""
        if key is None:
            return False
        keys, kk = self._keys, (tp, key)
        if kk not in keys:
            keys[kk] = None
            return False
        queued = keys[kk]
        if queued is None:
            keys[kk] = deque((job,))
        else:
            queued.append(job)
        return True

    def next_of_key(self, tp: TP, key: bytes | None) -> J | None:
        """The job of ``key`` finished: the next queued one to run, or None (key not busy)."""
        if key is None:
            return None
        kk = (tp, key)
        waiting = self._keys.get(kk)
        if waiting:
            return waiting.popleft()
        self._keys.pop(kk, None)
        return None

    def waiting(self, tp: TP) -> int:
        """Jobs of this partition queued behind busy keys."""
        return sum(len(q) for (t, _), q in self._keys.items() if t == tp and q)
