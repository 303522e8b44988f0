"""Which offset of a partition is safe to commit: a pure data structure, no I/O.

Invariant: :meth:`OffsetTracker.committable` never returns a position beyond a received
offset that is not finished. Records finish out of order (tasks run concurrently), but the
committed position only advances over the unbroken run of finished offsets from the oldest
received one — everything after the first unfinished offset is redelivered after a crash.
"""

from __future__ import annotations

from collections import deque

__all__ = ["OffsetTracker"]


class OffsetTracker:
    """Offsets received from one partition, in order, and which of them are finished."""

    __slots__ = ("_done", "_last_received", "_order", "_position", "unfinished")

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._done: set[int] = set()
        self._position: int | None = None  # next offset to consume after the committable run
        self._last_received = -1
        #: received offsets whose task has not finished (kept as a count: read per record)
        self.unfinished = 0

    def add(self, offset: int) -> bool:
        """Record a received offset. Returns False for a re-delivery of one already seen."""
        if offset <= self._last_received:
            return False
        self._order.append(offset)
        self._last_received = offset
        self.unfinished += 1
        return True

    def finish(self, offset: int) -> bool:
        """Mark ``offset`` finished. Returns False if it is not pending here."""
        if not self._order or offset < self._order[0] or offset > self._last_received:
            return False
        if offset in self._done:
            return False
        self._done.add(offset)
        self.unfinished -= 1
        return True

    def committable(self) -> int | None:
        """The position to commit (last finished offset of the unbroken run + 1), or None."""
        order, done = self._order, self._done
        while order and order[0] in done:
            offset = order.popleft()
            done.discard(offset)
            self._position = offset + 1
        return self._position

    def oldest_unfinished(self) -> int | None:
        """The received offset the committable position waits for, if any."""
        done = self._done
        return next((o for o in self._order if o not in done), None)

    @property
    def pending(self) -> int:
        """Received offsets not yet covered by the committable position."""
        return len(self._order)
