"""What the dashboard remembers: bounded rolling aggregates fed by the Kafka tails.

Nothing here does I/O; the tails (:mod:`streamtasks.dashboard.tails`) call the ``record_*``
methods, the web handlers call the ``*_view`` methods, both under one lock.

Invariants (memory stays bounded whatever the traffic):

* per queue, one ``[finished, failed]`` counter pair per minute for the last :data:`HOUR_MS`
  (older minutes are dropped as time moves on);
* at most :data:`RECENT_TASKS` recent tasks, :data:`TIMELINES` task timelines of at most
  :data:`EVENTS_PER_TASK` events each, :data:`ARGS_KEPT` raw argument frames,
  :data:`FAILURE_GROUPS` failure groups and :data:`LAG_SAMPLES` lag samples per queue — the
  oldest go first;
* the history is rebuilt from the topics on a restart, so these are caches, not the truth.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from streamtasks.ops.status import RATE_WINDOW_S
from streamtasks.wire.envelope import ResultRecord, TaskStatus
from streamtasks.wire.events import WorkerHeartbeat

__all__ = [
    "Aggregates",
    "FailureGroup",
    "LagSample",
    "MinuteBucket",
    "RecentTask",
    "TimelineEntry",
    "lag_growing",
    "minute_of",
]

MINUTE_MS = 60_000
HOUR_MS = 60 * MINUTE_MS
_RATE_WINDOW_MS = int(RATE_WINDOW_S * 1000)
RECENT_TASKS = 1_000
TIMELINES = 5_000
EVENTS_PER_TASK = 40
ARGS_KEPT = 2_000
FAILURE_GROUPS = 500
LAG_SAMPLES = 240
#: a queue's lag in seconds that grew over this long raises the overview's red banner
LAG_GROWTH_MS = 3 * MINUTE_MS
_FAILED = (TaskStatus.FAILURE, TaskStatus.DEAD)

K = TypeVar("K")
V = TypeVar("V")


def minute_of(ts_ms: int) -> int:
    return ts_ms // MINUTE_MS


@dataclass(frozen=True, slots=True)
class LagSample:
    at_ms: int
    lag_seconds: float


def lag_growing(samples: Sequence[LagSample], now_ms: int, span_ms: int = LAG_GROWTH_MS) -> bool:
    """True when the samples cover at least the last ``span_ms`` and lag seconds never fell in
    that span while ending higher than it started (a stuck or outrun queue)."""
    window = [s for s in samples if s.at_ms >= now_ms - span_ms - MINUTE_MS]
    if len(window) < 2 or window[-1].at_ms - window[0].at_ms < span_ms:
        return False
    if any(b.lag_seconds < a.lag_seconds for a, b in itertools.pairwise(window)):
        return False
    return window[-1].lag_seconds > window[0].lag_seconds


@dataclass(frozen=True, slots=True)
class MinuteBucket:
    minute: int
    finished: int
    failed: int


@dataclass(frozen=True, slots=True)
class RecentTask:
    task_id: str
    task: str
    queue: str
    status: str
    attempts: int
    at_ms: int
    error_type: str | None


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    type: str
    at_ms: int
    attempt: int
    worker_id: str | None
    detail: str


@dataclass(slots=True)
class FailureGroup:
    task: str
    error_type: str
    count: int = 0
    last_message: str = ""
    last_task_id: str = ""
    last_at_ms: int = 0


class _Lru(Generic[K, V]):
    """A dict that forgets its least recently written keys beyond ``cap``."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.items: OrderedDict[K, V] = OrderedDict()

    def put(self, key: K, value: V) -> None:
        self.items[key] = value
        self.items.move_to_end(key)
        while len(self.items) > self.cap:
            self.items.popitem(last=False)

    def get(self, key: K) -> V | None:
        return self.items.get(key)

    def __len__(self) -> int:
        return len(self.items)


@dataclass
class _Queue:
    minutes: dict[int, list[int]] = field(default_factory=dict)
    lag: deque[LagSample] = field(default_factory=lambda: deque(maxlen=LAG_SAMPLES))


class Aggregates:
    """The dashboard's memory; every method is thread-safe."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._queues: dict[str, _Queue] = {}
        self._recent: _Lru[str, RecentTask] = _Lru(RECENT_TASKS)
        self._timelines: _Lru[str, list[TimelineEntry]] = _Lru(TIMELINES)
        self._args: _Lru[str, tuple[str, bytes]] = _Lru(ARGS_KEPT)
        self._failures: _Lru[tuple[str, str], FailureGroup] = _Lru(FAILURE_GROUPS)
        # per worker, its heartbeats of the status rate window before its latest (kept too)
        self._heartbeats: dict[str, deque[WorkerHeartbeat]] = {}
        self.results_seen = 0
        self.events_seen = 0

    # -- feeding ---------------------------------------------------------------------------
    def record_result(
        self, rec: ResultRecord, queue: str, now_ms: int, previous: ResultRecord | None = None
    ) -> None:
        """Count ``rec``; ``previous``: the record of the same task id it supersedes (a retry
        or redrive outcome), whose counts are taken back, so the figures are those of each
        task's latest state — what a dashboard rebuilt from the topic would show."""
        with self.lock:
            self.results_seen += 1
            if previous is not None:
                self._count(previous, queue, now_ms, -1)
            self._recent.put(
                rec.task_id,
                RecentTask(
                    rec.task_id,
                    rec.task,
                    queue,
                    rec.status.value,
                    rec.attempts,
                    _at(rec),
                    rec.error.type if rec.error else None,
                ),
            )
            self._count(rec, queue, now_ms, +1)

    def retract(self, rec: ResultRecord, queue: str, now_ms: int) -> None:
        """Take back a result whose task id was deleted (a tombstone: result TTL)."""
        with self.lock:
            self._count(rec, queue, now_ms, -1)
            self._recent.items.pop(rec.task_id, None)

    def _count(self, rec: ResultRecord, queue: str, now_ms: int, sign: int) -> None:
        if not rec.status.is_final:
            return
        at = _at(rec)
        q = self._queue(queue)
        if at >= now_ms - HOUR_MS:
            counts = q.minutes.setdefault(minute_of(at), [0, 0])
            counts[0] = max(0, counts[0] + sign)
            counts[1] = max(0, counts[1] + sign * (rec.status in _FAILED))
            self._prune(q, now_ms)
        if rec.status in _FAILED:
            self._record_failure(rec, at, sign)

    def _record_failure(self, rec: ResultRecord, at: int, sign: int) -> None:
        kind = rec.error.type if rec.error else rec.status.value
        group = self._failures.get((rec.task, kind)) or FailureGroup(rec.task, kind)
        group.count += sign
        if group.count <= 0:
            self._failures.items.pop((rec.task, kind), None)
            return
        if sign > 0 and at >= group.last_at_ms:
            group.last_at_ms = at
            group.last_task_id = rec.task_id
            group.last_message = rec.error.message if rec.error else ""
        self._failures.put((rec.task, kind), group)

    def record_event(self, task_id: str, entry: TimelineEntry) -> None:
        with self.lock:
            self.events_seen += 1
            line = self._timelines.get(task_id) or []
            line.append(entry)
            line.sort(key=lambda e: e.at_ms)
            self._timelines.put(task_id, line[-EVENTS_PER_TASK:])

    def record_args(self, task_id: str, task: str, args: bytes) -> None:
        with self.lock:
            self._args.put(task_id, (task, args))

    def record_heartbeat(self, worker_id: str, heartbeat: WorkerHeartbeat) -> None:
        """Keep each worker's latest heartbeat and those of the rate window before it (what
        :func:`streamtasks.ops.status.collect` needs for the tasks/s); an older one than the
        latest is ignored; workers silent for an hour are forgotten."""
        with self.lock:
            beats = self._heartbeats.setdefault(worker_id, deque())
            if beats and heartbeat.timestamp < beats[-1].timestamp:
                return
            beats.append(heartbeat)
            while beats[0].timestamp < heartbeat.timestamp - _RATE_WINDOW_MS:
                beats.popleft()
            oldest = heartbeat.timestamp - HOUR_MS
            for wid in [w for w, b in self._heartbeats.items() if b[-1].timestamp < oldest]:
                del self._heartbeats[wid]

    def record_lag(self, queue: str, at_ms: int, lag_seconds: float) -> None:
        with self.lock:
            self._queue(queue).lag.append(LagSample(at_ms, lag_seconds))

    def _queue(self, name: str) -> _Queue:
        return self._queues.setdefault(name, _Queue())

    @staticmethod
    def _prune(q: _Queue, now_ms: int) -> None:
        oldest = minute_of(now_ms - HOUR_MS)
        for minute in [m for m in q.minutes if m < oldest]:
            del q.minutes[minute]

    # -- views -------------------------------------------------------------------------------
    def minutes_view(self, queue: str, now_ms: int) -> list[MinuteBucket]:
        """The last hour of ``queue``, one bucket per minute (oldest first, zeros included)."""
        with self.lock:
            q = self._queue(queue)
            self._prune(q, now_ms)
            last = minute_of(now_ms)
            return [
                MinuteBucket(m, *q.minutes.get(m, (0, 0)))
                for m in range(last - HOUR_MS // MINUTE_MS + 1, last + 1)
            ]

    def lag_alarm(self, queue: str, now_ms: int) -> bool:
        with self.lock:
            return lag_growing(list(self._queue(queue).lag), now_ms)

    def recent_view(
        self, *, task: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[RecentTask]:
        with self.lock:
            rows = list(reversed(self._recent.items.values()))
        chosen = (
            r
            for r in rows
            if (not task or r.task == task) and (not status or r.status == status.upper())
        )
        return sorted(chosen, key=lambda r: r.at_ms, reverse=True)[:limit]

    def timeline(self, task_id: str) -> list[TimelineEntry]:
        with self.lock:
            return list(self._timelines.get(task_id) or [])

    def args_of(self, task_id: str) -> tuple[str, bytes] | None:
        with self.lock:
            return self._args.get(task_id)

    def failures_view(self) -> list[FailureGroup]:
        with self.lock:
            groups = list(self._failures.items.values())
        return sorted(groups, key=lambda g: (-g.count, g.task, g.error_type))

    def heartbeats(self) -> list[WorkerHeartbeat]:
        """Each worker's latest heartbeat."""
        with self.lock:
            return [beats[-1] for beats in self._heartbeats.values()]

    def window_heartbeats(self) -> list[WorkerHeartbeat]:
        """Every heartbeat kept: each worker's latest and those of the rate window before it
        (pass them to :func:`streamtasks.ops.status.collect` as ``heartbeats=``)."""
        with self.lock:
            return [hb for beats in self._heartbeats.values() for hb in beats]

    def sizes(self) -> dict[str, int]:
        """How much is held (for the load measurement and the footer)."""
        with self.lock:
            return {
                "recent": len(self._recent),
                "timelines": len(self._timelines),
                "args": len(self._args),
                "failure_groups": len(self._failures),
                "minutes": sum(len(q.minutes) for q in self._queues.values()),
            }


def _at(rec: ResultRecord) -> int:
    return rec.finished_at or rec.started_at or rec.created_at


def totals(buckets: Iterable[MinuteBucket]) -> tuple[int, int]:
    finished = failed = 0
    for b in buckets:
        finished += b.finished
        failed += b.failed
    return finished, failed
