"""Burst mode's one decision: has the worker drained everything it was given?

A burst worker (``Worker.run(burst=True)``, ``streamtasks worker APP --burst``, modelled on arq's
burst mode) stops once every assigned partition was read to its end, nothing is in flight, and
no retry record is held for later. The worker feeds :class:`DrainWatch` from its poll thread;
the class does no I/O.

Invariant: a partition counts as drained only when an end-of-partition event reported an end
at or beyond every offset known to exist there — the records received and the records this
worker itself produced to it (a chain step, a retry) — so a stale end event that was queued
before the worker's own output landed cannot end the run early.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["DrainWatch"]

TP = tuple[str, int]


class DrainWatch:
    def __init__(self) -> None:
        self._assigned: set[TP] = set()
        self._end: dict[TP, int] = {}  # end offset the last end-of-partition event reported
        self._known: dict[TP, int] = {}  # one past the highest offset known to exist

    def assigned(self, tps: Iterable[TP]) -> None:
        self._assigned.update(tps)

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._assigned.discard(tp)
            self._end.pop(tp, None)

    def seen(self, tp: TP, offset: int) -> None:
        """A record at ``offset`` exists on ``tp`` (received, or produced there)."""
        if offset + 1 > self._known.get(tp, 0):
            self._known[tp] = offset + 1

    def at_end(self, tp: TP, end: int) -> None:
        """An end-of-partition event: ``tp`` was read up to ``end``."""
        self._end[tp] = max(end, self._end.get(tp, 0))

    def drained(self) -> bool:
        """Every assigned partition was read to the end of all it is known to hold."""
        return bool(self._assigned) and all(
            tp in self._end and self._end[tp] >= self._known.get(tp, 0) for tp in self._assigned
        )
