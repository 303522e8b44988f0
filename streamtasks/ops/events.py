"""Reading ``{ns}.events``: task lifecycle events and worker heartbeats, and who is online.

* :func:`read_events` — the events from a time (or the beginning) to the end, or on and on
  with ``follow``; bad records are reported to ``on_bad`` (default: logged) and skipped;
* :func:`workers` — the latest heartbeat of each worker seen lately, with its age and whether
  it is online; :func:`recent_heartbeats` — every heartbeat since a time (for rates);
* pure, unit-tested: :func:`is_online`, :func:`latest_heartbeats`, :func:`worker_views`,
  :func:`queue_rates`, and for ``streamtasks events`` :func:`EventFilter` and :func:`describe`
  (one line per event, like ``celery events --dump``).

A worker is **online** while its last heartbeat says ``ONLINE`` and is at most
:data:`MISSED_BEATS` of its own intervals old; a clean stop sends ``OFFLINE``, a crash is
noticed by the age.

Invariants: records are read with :mod:`streamtasks.kafka.reader` (no consumer group, no
offsets committed: reading changes nothing); a kind filter looks at the ``st-kind`` header,
so skipped records are not decoded; an undecodable record never ends a read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from streamtasks.errors import BrokerError, ConfigError
from streamtasks.kafka import reader
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.events import (
    KIND_HEARTBEAT,
    KIND_TASK,
    KIND_TASK_BATCH,
    Event,
    EventDecodeError,
    TaskEventType,
    WorkerHeartbeat,
    WorkerState,
    decode_events,
    kind_of,
)
from streamtasks.wire.topics import events_topic

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.kafka import Message

__all__ = [
    "FAILED_COUNTERS",
    "FINISHED_COUNTERS",
    "HEARTBEAT",
    "MISSED_BEATS",
    "EventFilter",
    "QueueRate",
    "WorkerView",
    "describe",
    "is_online",
    "latest_heartbeats",
    "queue_rates",
    "read_events",
    "recent_heartbeats",
    "worker_views",
    "workers",
]

log = structlog.get_logger("streamtasks.ops")

#: a worker whose last heartbeat is older than this many of its intervals is offline
MISSED_BEATS = 3
#: the counters whose sum is "tasks finished" (a retry is not finished)
FINISHED_COUNTERS = ("succeeded", "failed", "dead", "expired", "revoked")
#: the counters whose sum is "tasks failed"
FAILED_COUNTERS = ("failed", "dead")


# -- pure -------------------------------------------------------------------------------------
def is_online(hb: WorkerHeartbeat, now: int) -> bool:
    """``ONLINE`` and not older than :data:`MISSED_BEATS` intervals."""
    return hb.state is WorkerState.ONLINE and now - hb.timestamp <= MISSED_BEATS * hb.interval_ms


def latest_heartbeats(heartbeats: Iterable[WorkerHeartbeat]) -> dict[str, WorkerHeartbeat]:
    """Per worker id its latest heartbeat (by its timestamp; on a tie, the one read last)."""
    latest: dict[str, WorkerHeartbeat] = {}
    for hb in heartbeats:
        known = latest.get(hb.worker_id)
        if known is None or hb.timestamp >= known.timestamp:
            latest[hb.worker_id] = hb
    return latest


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A worker as its latest heartbeat shows it."""

    heartbeat: WorkerHeartbeat
    age_seconds: float
    online: bool

    def as_dict(self) -> dict[str, object]:
        hb = self.heartbeat
        return {
            "id": hb.worker_id,
            "host": hb.host,
            "pid": hb.pid,
            "queues": list(hb.queues),
            "concurrency": hb.concurrency,
            "in_flight": hb.in_flight,
            "partitions": list(hb.partitions),
            "started_at": hb.started_at,
            "last_heartbeat": hb.timestamp,
            "last_heartbeat_age": round(self.age_seconds, 3),
            "online": self.online,
            "state": hb.state.value,
            "counters": dict(hb.counters),
        }


def worker_views(heartbeats: Iterable[WorkerHeartbeat], now: int) -> list[WorkerView]:
    """Each worker's latest heartbeat with its age and online state, online ones first."""
    views = [
        WorkerView(hb, max(0.0, (now - hb.timestamp) / 1000), is_online(hb, now))
        for hb in latest_heartbeats(heartbeats).values()
    ]
    return sorted(views, key=lambda v: (not v.online, v.heartbeat.worker_id))


@dataclass(frozen=True, slots=True)
class QueueRate:
    """Tasks per second of one queue over a window, summed over the workers."""

    queue: str
    finished: float
    failed: float


def queue_rates(
    heartbeats: Iterable[WorkerHeartbeat], now: int, window_s: float = 60.0
) -> dict[str, QueueRate]:
    """Per queue: tasks/s finished and failed over the last ``window_s``, from each worker's
    per-queue counters (its last heartbeat minus its first in the window, or minus zero when
    it started inside the window, over that time)."""
    start = now - int(window_s * 1000)
    spans: dict[str, list[WorkerHeartbeat]] = {}
    for hb in heartbeats:
        if start <= hb.timestamp <= now:
            spans.setdefault(hb.worker_id, []).append(hb)
    finished: dict[str, float] = {}
    failed: dict[str, float] = {}
    for beats in spans.values():
        beats.sort(key=lambda b: b.timestamp)
        first, last = beats[0], beats[-1]
        base_ms, base = first.timestamp, first.queue_counters
        if last.started_at >= start:
            base_ms, base = last.started_at, {}
        seconds = (last.timestamp - base_ms) / 1000
        if seconds <= 0:
            continue
        for queue, counts in last.queue_counters.items():
            before = base.get(queue, {})
            done = sum(counts.get(c, 0) - before.get(c, 0) for c in FINISHED_COUNTERS)
            bad = sum(counts.get(c, 0) - before.get(c, 0) for c in FAILED_COUNTERS)
            finished[queue] = finished.get(queue, 0.0) + max(0, done) / seconds
            failed[queue] = failed.get(queue, 0.0) + max(0, bad) / seconds
    return {q: QueueRate(q, finished[q], failed.get(q, 0.0)) for q in finished}


#: the ``--type`` of heartbeats
HEARTBEAT = "HEARTBEAT"


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Which events to show: task names and types (``HEARTBEAT`` for heartbeats); empty: all.
    A task filter shows task events only."""

    tasks: frozenset[str] = frozenset()
    types: frozenset[str] = frozenset()

    @classmethod
    def of(cls, tasks: Iterable[str] = (), types: Iterable[str] = ()) -> EventFilter:
        """Raises :class:`ConfigError` for a type that does not exist."""
        wanted = {t.strip().upper() for spec in types for t in spec.split(",") if t.strip()}
        known = {*TaskEventType.__members__, HEARTBEAT}
        unknown = sorted(wanted - known)
        if unknown:
            raise ConfigError(
                f"unknown event type {', '.join(unknown)}: use one of {', '.join(sorted(known))}"
            )
        return cls(frozenset(tasks), frozenset(wanted))

    def kinds(self) -> frozenset[str] | None:
        """The record kinds that can match (to skip the others without decoding)."""
        if self.tasks or (self.types and HEARTBEAT not in self.types):
            return frozenset({KIND_TASK})
        if self.types == {HEARTBEAT}:
            return frozenset({KIND_HEARTBEAT})
        return None

    def __call__(self, event: Event) -> bool:
        if isinstance(event, WorkerHeartbeat):
            return not self.tasks and (not self.types or HEARTBEAT in self.types)
        return (not self.tasks or event.task in self.tasks) and (
            not self.types or event.type.value in self.types
        )


def describe(event: Event) -> str:
    """One line, like ``celery events --dump``: time, what, who, and the details."""
    when = _iso(event.timestamp)
    if isinstance(event, WorkerHeartbeat):
        counts = " ".join(f"{k}={v}" for k, v in sorted(event.counters.items()) if v)
        return (
            f"{when} worker-{event.state.value.lower()} {event.worker_id} host={event.host} "
            f"pid={event.pid} queues={','.join(event.queues)} in_flight={event.in_flight}"
            + (f" {counts}" if counts else "")
        )
    parts = [f"{when} task-{event.type.value.lower()} {event.task}[{event.task_id}]"]
    parts.append(f"queue={event.queue} attempt={event.attempt}")
    if event.worker_id is not None:
        parts.append(f"worker={event.worker_id}")
    if event.runtime_ms is not None:
        parts.append(f"runtime={event.runtime_ms / 1000:.3f}s")
    if event.partition is not None:
        parts.append(f"partition={event.partition} offset={event.offset}")
    if event.error is not None:
        parts.append(f"error={event.error.type}: {event.error.message[:200]!r}")
    return " ".join(parts)


def _iso(ms: int) -> str:
    stamp = datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


# -- reading ----------------------------------------------------------------------------------
def _log_bad(msg: Message, exc: EventDecodeError) -> None:
    log.warning(
        "undecodable record on the events topic; skipped",
        topic=msg.topic(),
        partition=msg.partition(),
        offset=msg.offset(),
        error=str(exc),
    )


def read_events(
    app: App,
    *,
    since_ms: int | None = None,
    follow: bool = False,
    kinds: Iterable[str] | None = None,
    stop: Callable[[], bool] | None = None,
    on_bad: Callable[[Message, EventDecodeError], None] = _log_bad,
    missing_ok: bool = False,
    timeout: float = 10.0,
) -> Iterator[Event]:
    """The events of ``app``'s ``{ns}.events`` stamped at or after ``since_ms`` (None: from the
    beginning), in offset order per partition, to the end it had when reached; with ``follow``
    new ones as they come, until ``stop()`` is true; a batch of task events is expanded into
    its events. ``kinds``: only these :data:`~streamtasks.wire.headers.KIND` values (``task``
    — single task events and batches of them — or ``heartbeat``).

    Raises :class:`BrokerError` when no broker answers, or when the topic does not exist
    (``missing_ok``: nothing is read then).
    """
    wanted = frozenset(kinds) if kinds is not None else None
    if wanted is not None and KIND_TASK in wanted:  # task events: single ones and batches
        wanted |= {KIND_TASK_BATCH}
    topic = events_topic(app.settings.namespace)
    consumer = reader.open_reader(app)
    try:
        starts = reader.starts_since(consumer, [topic], since_ms, timeout=timeout)
        if not starts and not missing_ok:
            raise BrokerError(
                f"topic {topic} does not exist: start a worker, or run `streamtasks topics apply`"
            )
        if follow:
            msgs = reader.tail(consumer, starts, stop=stop or (lambda: False))
        else:
            msgs = reader.read_range(consumer, starts, timeout=timeout)
        for msg in msgs:
            if since_ms is not None and reader.record_ts(msg) < since_ms:
                continue
            headers = msg.headers()
            kind = kind_of(headers)
            if wanted is not None and (kind or KIND_TASK) not in wanted:
                continue
            try:
                events = decode_events(msg.value(), headers)
            except EventDecodeError as exc:
                on_bad(msg, exc)
                continue
            if kind == KIND_TASK_BATCH and since_ms is not None:
                # a batch is stamped when it was written: its first events may be older
                events = [e for e in events if e.timestamp >= since_ms]
            yield from events
    finally:
        consumer.close()


def recent_heartbeats(app: App, since_ms: int, *, timeout: float = 10.0) -> list[WorkerHeartbeat]:
    """Every heartbeat on the events topic stamped at or after ``since_ms`` ([] when the topic
    does not exist yet)."""
    events = read_events(
        app, since_ms=since_ms, kinds=[KIND_HEARTBEAT], missing_ok=True, timeout=timeout
    )
    return [e for e in events if isinstance(e, WorkerHeartbeat)]


def workers(
    app: App, *, lookback_s: float = 600.0, now: int | None = None, timeout: float = 10.0
) -> list[WorkerView]:
    """The workers that sent a heartbeat in the last ``lookback_s`` seconds, each as its
    latest heartbeat shows it (online ones first)."""
    at = now_ms() if now is None else now
    return worker_views(recent_heartbeats(app, at - int(lookback_s * 1000), timeout=timeout), at)
