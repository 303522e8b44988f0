"""Replay: re-enqueue the task events of a time range of a queue, resumably, once per replay.

A replay is defined by a :class:`ReplaySpec` (queue, time range, filters) under a replay id.
It reads ``{ns}.tasks.{queue}`` from the first record timestamped at or after the range's start
and re-enqueues every selected event to the same topic (same key, so same partition):

* the **range** is ``[start, end)`` in epoch ms against each record's own timestamp: a record
  stamped exactly ``start`` is selected, one stamped exactly ``end`` is not. ``end`` is clamped
  to the replay's creation time, so a replay never selects what it enqueued itself;
* **filters**: task names, record key, and the task id's latest status in the result store
  (``PENDING`` when it has no result). Events a replay enqueued (``st-replay`` header) are
  never selected again — replay the original range instead;
* the **re-enqueued event** has the same task id (``--new-ids``: a fresh id, the original in
  the ``st-replay-of`` header), attempt 1, no eta, no expiry, no last error, and the headers
  ``st-replay`` (the replay id) and ``st-replay-origin`` (``topic:partition:offset``).
  Workers run it even when the id already has a final result (see :mod:`streamtasks.execution`),
  and its new result supersedes the old one.

Progress and "never twice": the spec and, per partition, the position up to which every
selected event was enqueued *and acknowledged* are recorded in the compacted ``{ns}.replays``
topic (keys ``{id}`` and ``{id}/{partition}``). Running a replay id again (``--resume``) starts
each partition at its position and, for the events after it (enqueued before an interruption but
not yet recorded), consults the queue's topic itself: every record carrying this replay id's
``st-replay`` header names its origin, and an origin found there is not enqueued again. A new
replay id replays the range again, which is its purpose.

Pure parts (unit-tested): :func:`parse_time`, :class:`ReplaySpec` and its ``selects``,
:func:`replayed_envelope`, :func:`replay_headers`, :func:`fold_progress`.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, KafkaError, Message

from streamtasks import _kafka, reader
from streamtasks.config import KafkaValue
from streamtasks.envelope import Envelope, TaskStatus, now_ms
from streamtasks.errors import BrokerError, ConfigError, DecodeError
from streamtasks.store import ResultStore
from streamtasks.topics import (
    REPLAY_HEADER,
    REPLAY_OF_HEADER,
    REPLAY_ORIGIN_HEADER,
    Headers,
    TopicSpec,
    replays_topic,
    task_topic,
)

if TYPE_CHECKING:
    from confluent_kafka import Consumer

    from streamtasks.app import App

__all__ = [
    "Progress",
    "Replay",
    "ReplayCandidate",
    "ReplayPlan",
    "ReplaySpec",
    "ReplaySummary",
    "fold_progress",
    "new_replay_id",
    "parse_statuses",
    "parse_time",
    "replay_headers",
    "replayed_envelope",
]

log = structlog.get_logger("streamtasks.replay")

#: a partition is read until a record stamped this long after the range's end (timestamps are
#: nearly ordered along a partition; a record that late means the range is behind us)
LATE_MS = 60_000
_RELATIVE = re.compile(r"^([+-])\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DROPPED_HEADERS = {
    "st-id",
    "st-attempt",
    "st-not-before",
    "st-first-failure",
    REPLAY_HEADER,
    REPLAY_ORIGIN_HEADER,
    REPLAY_OF_HEADER,
}
_FLUSH_EVERY = 500  # selected events between recorded positions ...
_FLUSH_EVERY_S = 1.0  # ... or seconds, whichever comes first


# -- pure: times, specs, selection ---------------------------------------------------------------
def parse_time(text: str, now: int) -> int:
    """Epoch ms of ``text``: ``now``, a relative time (``-2h``, ``-30m``, ``+10s``, ``-1.5d``,
    units ms/s/m/h/d/w), an ISO-8601 date/time (no offset means UTC), or epoch ms digits."""
    value = text.strip()
    if value.lower() == "now":
        return now
    rel = _RELATIVE.match(value)
    if rel is not None:
        sign = -1 if rel.group(1) == "-" else 1
        return now + sign * int(float(rel.group(2)) * _UNIT_MS[rel.group(3)])
    if value.isdigit() and len(value) >= 11:
        return int(value)
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(
            f"cannot read the time {text!r}: use ISO-8601 (2026-12-01T09:00:00Z, no offset means "
            "UTC), a relative time like -2h, -30m, -90s, -1d, 'now', or epoch milliseconds"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def parse_statuses(text: str | None) -> frozenset[TaskStatus] | None:
    """``"FAILURE,DEAD"`` → those statuses; None/empty → no status filter."""
    if not text:
        return None
    out = set()
    for part in text.split(","):
        name = part.strip().upper()
        if not name:
            continue
        try:
            out.add(TaskStatus(name))
        except ValueError:
            known = ", ".join(s.value for s in TaskStatus)
            raise ConfigError(f"unknown status {part.strip()!r}; use one of {known}") from None
    return frozenset(out) or None


def new_replay_id(now: int) -> str:
    stamp = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y%m%dT%H%M%S")
    return f"rp-{stamp}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True, slots=True)
class ReplaySpec:
    """What one replay selects and how it re-enqueues. Times are epoch ms, ``[start, end)``."""

    replay_id: str
    queue: str
    start_ms: int
    end_ms: int
    created_ms: int
    tasks: frozenset[str] | None = None
    key: bytes | None = None
    statuses: frozenset[TaskStatus] | None = None
    new_ids: bool = False

    def __post_init__(self) -> None:
        if self.end_ms <= self.start_ms:
            raise ConfigError(
                f"empty time range: --to ({_iso(self.end_ms)}) must be after --from "
                f"({_iso(self.start_ms)}) (--to is capped at the time the replay is created)"
            )

    def in_range(self, ts_ms: int) -> bool:
        return self.start_ms <= ts_ms < self.end_ms

    def selects(self, ts_ms: int, task: str, key: bytes | None, status: TaskStatus) -> bool:
        """Is an event of ``task`` with ``key``, stamped ``ts_ms``, whose id is in ``status``,
        part of this replay?"""
        return (
            self.in_range(ts_ms)
            and (self.tasks is None or task in self.tasks)
            and (self.key is None or key == self.key)
            and (self.statuses is None or status in self.statuses)
        )

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "replay_id": self.replay_id,
                "queue": self.queue,
                "start_ms": self.start_ms,
                "end_ms": self.end_ms,
                "created_ms": self.created_ms,
                "tasks": None if self.tasks is None else sorted(self.tasks),
                "key": None if self.key is None else self.key.decode("latin-1"),
                "statuses": None if self.statuses is None else sorted(self.statuses),
                "new_ids": self.new_ids,
            },
            sort_keys=True,
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ReplaySpec:
        d = json.loads(raw)
        return cls(
            replay_id=d["replay_id"],
            queue=d["queue"],
            start_ms=int(d["start_ms"]),
            end_ms=int(d["end_ms"]),
            created_ms=int(d["created_ms"]),
            tasks=None if d["tasks"] is None else frozenset(d["tasks"]),
            key=None if d["key"] is None else str(d["key"]).encode("latin-1"),
            statuses=None if d["statuses"] is None else frozenset(map(TaskStatus, d["statuses"])),
            new_ids=bool(d["new_ids"]),
        )


def replayed_envelope(env: Envelope, new_id: str | None) -> Envelope:
    """The event to enqueue for ``env``: a first attempt, due now, never expiring."""
    return dataclasses.replace(
        env,
        id=new_id or env.id,
        attempt=1,
        eta=None,
        expires=None,
        last_error=None,
    )


def replay_headers(
    original: Headers | None, env: Envelope, replay_id: str, origin: str, replay_of: str | None
) -> Headers:
    """The original record's own headers (user headers kept) with the task headers of ``env``
    and the replay markers."""
    kept: Headers = [(k, v) for k, v in original or () if k not in _DROPPED_HEADERS]
    kept = [(k, v) for k, v in kept if k != "st-task"]
    out: Headers = [
        ("st-task", env.task.encode()),
        ("st-id", env.id.encode()),
        ("st-attempt", str(env.attempt).encode()),
        *kept,
        (REPLAY_HEADER, replay_id.encode()),
        (REPLAY_ORIGIN_HEADER, origin.encode()),
    ]
    if replay_of is not None:
        out.append((REPLAY_OF_HEADER, replay_of.encode()))
    return out


@dataclass(frozen=True, slots=True)
class Progress:
    """A replay's recorded state: its spec and, per partition, the next offset to look at."""

    spec: ReplaySpec | None
    positions: dict[int, int] = field(default_factory=dict)
    finished: bool = False


def fold_progress(replay_id: str, records: Iterable[tuple[bytes | None, bytes | None]]) -> Progress:
    """Fold ``(key, value)`` records of the replays topic (in order) into ``replay_id``'s
    progress: the latest value per key wins, a tombstone deletes it."""
    latest: dict[str, bytes | None] = {}
    for key, value in records:
        if key is None:
            continue
        name = key.decode(errors="replace")
        if name == replay_id or name.startswith(replay_id + "/"):
            latest[name] = value
    raw = latest.get(replay_id)
    spec = None if raw is None else ReplaySpec.from_json(raw)
    positions: dict[int, int] = {}
    finished = False
    for name, value in latest.items():
        if value is None or name == replay_id:
            continue
        suffix = name[len(replay_id) + 1 :]
        if suffix == "done":
            finished = True
        elif suffix.isdigit():
            positions[int(suffix)] = int(json.loads(value)["next"])
    return Progress(spec, positions, finished)


@dataclass(frozen=True, slots=True)
class ReplayCandidate:
    """A selected event, as read."""

    partition: int
    offset: int
    ts_ms: int
    key: bytes | None
    env: Envelope
    status: TaskStatus
    headers: Headers | None

    @property
    def origin(self) -> tuple[int, int]:
        return (self.partition, self.offset)


@dataclass(frozen=True, slots=True)
class ReplayPlan:
    """What a replay selects (a dry run): counts per (task, status) and a sample."""

    selected: int
    by_task_status: dict[tuple[str, str], int]
    sample: list[dict[str, Any]]
    undecodable: int


@dataclass(frozen=True, slots=True)
class ReplaySummary:
    replay_id: str
    selected: int
    enqueued: int
    skipped: int  # selected, but enqueued before by an earlier run of this replay id
    elapsed_s: float


# -- I/O --------------------------------------------------------------------------------------
class Replay:
    """One replay of a queue's range: :meth:`create` a new one or :meth:`load` an existing id,
    then :meth:`plan` (dry run) and :meth:`run`."""

    def __init__(self, app: App, spec: Progress | ReplaySpec, *, store_path: str | None = None):
        self.app = app
        progress = spec if isinstance(spec, Progress) else Progress(spec)
        assert progress.spec is not None
        self.spec = progress.spec
        self.progress = progress
        self.topic = task_topic(app.settings.namespace, self.spec.queue)
        self._store_path = store_path
        self._loaded = isinstance(spec, Progress)  # recorded before: a resume or a re-run
        self._statuses: dict[str, TaskStatus] | None = None

    # -- creating / loading ------------------------------------------------------------------
    @classmethod
    def create(
        cls,
        app: App,
        queue: str,
        start: str,
        end: str,
        *,
        tasks: Iterable[str] = (),
        key: str | None = None,
        statuses: str | None = None,
        new_ids: bool = False,
        now: int | None = None,
        store_path: str | None = None,
    ) -> Replay:
        """A new replay (not yet recorded: :meth:`run` records it)."""
        now = now_ms() if now is None else now
        if queue not in app.queues():
            raise ConfigError(
                f"queue {queue!r} has no tasks in app {app.name!r}; known queues: {app.queues()}"
            )
        spec = ReplaySpec(
            replay_id=new_replay_id(now),
            queue=queue,
            start_ms=parse_time(start, now),
            end_ms=min(parse_time(end, now), now),
            created_ms=now,
            tasks=frozenset(tasks) or None,
            key=None if key is None else key.encode(),
            statuses=parse_statuses(statuses),
            new_ids=new_ids,
        )
        return cls(app, spec, store_path=store_path)

    @classmethod
    def load(cls, app: App, replay_id: str, *, store_path: str | None = None) -> Replay:
        """The replay recorded under ``replay_id`` (to resume or re-run it)."""
        progress = fold_progress(replay_id, _read_replays(app))
        if progress.spec is None:
            raise ConfigError(
                f"no replay {replay_id!r} is recorded in {replays_topic(app.settings.namespace)!r}"
            )
        return cls(app, progress, store_path=store_path)

    # -- selecting --------------------------------------------------------------------------
    def plan(self, sample_size: int = 10) -> ReplayPlan:
        """What this replay selects (reads only)."""
        counts: Counter[tuple[str, str]] = Counter()
        sample: list[dict[str, Any]] = []
        undecodable = [0]
        for cand in self._candidates(undecodable):
            counts[(cand.env.task, cand.status.value)] += 1
            if len(sample) < sample_size:
                sample.append(
                    {
                        "task_id": cand.env.id,
                        "task": cand.env.task,
                        "status": cand.status.value,
                        "partition": cand.partition,
                        "offset": cand.offset,
                        "timestamp": _iso(cand.ts_ms),
                    }
                )
        return ReplayPlan(sum(counts.values()), dict(counts), sample, undecodable[0])

    def _candidates(
        self, undecodable: list[int], *, resume: bool = False
    ) -> Iterable[ReplayCandidate]:
        spec = self.spec
        statuses = self._status_map()
        consumer = reader.open_reader(self.app)
        try:
            parts = reader.partitions_of(consumer, self.topic)
            if not parts:
                raise BrokerError(
                    f"the task topic {self.topic!r} does not exist: check --queue, or run "
                    "`streamtasks topics apply` first"
                )
            starts: dict[tuple[str, int], int] = {}
            for p in parts:
                start = reader.offset_for_time(consumer, self.topic, p, spec.start_ms)
                if resume:
                    start = max(start, self.progress.positions.get(p, 0))
                starts[(self.topic, p)] = start
            late = spec.end_ms + LATE_MS
            for msg in reader.read_range(
                consumer, starts, stop=lambda m: reader.record_ts(m) >= late
            ):
                cand = self._candidate(msg, statuses, undecodable)
                if cand is not None:
                    yield cand
        finally:
            consumer.close()

    def _candidate(
        self, msg: Message, statuses: Mapping[str, TaskStatus], undecodable: list[int]
    ) -> ReplayCandidate | None:
        ts = reader.record_ts(msg)
        if not self.spec.in_range(ts):
            return None
        headers = _headers(msg)
        if any(k == REPLAY_HEADER for k, _ in headers or ()):
            return None  # a copy some replay enqueued
        try:
            _, raw = self.app.codec.decode(msg.value(), expect=self.app.envelope_schema)
        except DecodeError:
            undecodable[0] += 1
            return None
        env = Envelope.from_avro(raw)
        status = statuses.get(env.id, TaskStatus.PENDING)
        if not self.spec.selects(ts, env.task, msg.key(), status):
            return None
        return ReplayCandidate(
            int(msg.partition() or 0), int(msg.offset() or 0), ts, msg.key(), env, status, headers
        )

    def _status_map(self) -> dict[str, TaskStatus]:
        if self._statuses is None:
            with ResultStore(self.app, self._store_path or ":memory:") as store:
                store.sync()
                self._statuses = {r.task_id: r.status for r in store.query(limit=None)}
        return self._statuses

    # -- running ----------------------------------------------------------------------------
    def run(
        self,
        *,
        rate: float | None = None,
        on_progress: Callable[[int, int, int], None] | None = None,
    ) -> ReplaySummary:
        """Enqueue what this replay selects and has not enqueued yet; record progress.

        ``rate``: at most this many events enqueued per second. ``on_progress(selected,
        enqueued, skipped)`` is called as it goes.
        """
        began = time.monotonic()
        spec = self.spec
        self._ensure_topic()
        resume = self._loaded
        cfg: dict[str, KafkaValue] = {
            "enable.idempotence": True,
            "client.id": f"replay-{spec.replay_id}",
        }
        producer = _kafka.make_producer(self.app.settings.producer(**cfg))
        acks = _Acks()
        self._record(producer, spec.replay_id, spec.to_json(), acks)
        _flush(producer, acks)
        done = self._already_enqueued() if resume else set()
        selected = enqueued = skipped = 0
        saved = time.monotonic()
        read_to: dict[int, int] = {}
        undecodable = [0]
        for cand in self._candidates(undecodable, resume=resume):
            selected += 1
            if cand.origin in done:
                skipped += 1
            else:
                self._enqueue(producer, cand, acks)
                enqueued += 1
                if rate:
                    _throttle(began, enqueued, rate)
            read_to[cand.partition] = cand.offset + 1
            if selected % _FLUSH_EVERY == 0 or time.monotonic() - saved > _FLUSH_EVERY_S:
                self._save_positions(producer, read_to, acks)
                saved = time.monotonic()
            if on_progress is not None:
                on_progress(selected, enqueued, skipped)
            producer.poll(0)
        self._save_positions(producer, read_to, acks)
        self._record(producer, f"{spec.replay_id}/done", b'{"done": true}', acks)
        _flush(producer, acks)
        summary = ReplaySummary(
            spec.replay_id, selected, enqueued, skipped, time.monotonic() - began
        )
        log.info("replay finished", **dataclasses.asdict(summary))
        return summary

    def _enqueue(self, producer: Any, cand: ReplayCandidate, acks: _Acks) -> None:
        spec = self.spec
        new_id = f"{cand.env.id}.r-{uuid.uuid4().hex[:12]}" if spec.new_ids else None
        env = replayed_envelope(cand.env, new_id)
        origin = f"{self.topic}:{cand.partition}:{cand.offset}"
        headers = replay_headers(
            cand.headers, env, spec.replay_id, origin, cand.env.id if new_id else None
        )
        value = self.app.codec.encode(self.app.envelope_schema, env.to_avro())
        _produce(
            producer,
            self.topic,
            value,
            key=cand.key if cand.key is not None else env.id.encode(),
            headers=headers,
            partition=cand.partition,
            acks=acks,
        )

    def _save_positions(self, producer: Any, read_to: Mapping[int, int], acks: _Acks) -> None:
        """Every event read so far was enqueued and acknowledged: record how far."""
        _flush(producer, acks)
        for partition, nxt in read_to.items():
            value = json.dumps({"next": nxt}).encode()
            self._record(producer, f"{self.spec.replay_id}/{partition}", value, acks)
        _flush(producer, acks)

    def _record(self, producer: Any, key: str, value: bytes, acks: _Acks) -> None:
        topic = replays_topic(self.app.settings.namespace)
        _produce(producer, topic, value, key=key.encode(), headers=[], partition=None, acks=acks)

    def _already_enqueued(self) -> set[tuple[int, int]]:
        """Origins (partition, offset) of the events this replay id enqueued before: the
        records of the queue's topic carrying its ``st-replay`` header, from its creation."""
        spec = self.spec
        mine = spec.replay_id.encode()
        out: set[tuple[int, int]] = set()
        consumer = reader.open_reader(self.app)
        try:
            parts = reader.partitions_of(consumer, self.topic)
            starts = {
                (self.topic, p): reader.offset_for_time(consumer, self.topic, p, spec.created_ms)
                for p in parts
            }
            for msg in reader.read_range(consumer, starts):
                hdrs = dict(_headers(msg) or [])
                if _as_bytes(hdrs.get(REPLAY_HEADER)) != mine:
                    continue
                origin = (_as_bytes(hdrs.get(REPLAY_ORIGIN_HEADER)) or b"").decode()
                fields = origin.rsplit(":", 2)
                if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
                    out.add((int(fields[1]), int(fields[2])))
        finally:
            consumer.close()
        return out

    def _ensure_topic(self) -> None:
        settings = self.app.settings
        admin = _kafka.make_admin(settings.admin())
        _kafka.check_reachable(admin, settings.require_bootstrap(), timeout=5.0)
        _kafka.apply_topics(
            admin,
            [TopicSpec(replays_topic(settings.namespace), 1, {"cleanup.policy": "compact"})],
            replication_factor=settings.replication_factor,
        )


# -- helpers ---------------------------------------------------------------------------------
class _Acks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failed.append(err.str())


def _produce(
    producer: Any,
    topic: str,
    value: bytes,
    *,
    key: bytes,
    headers: Headers,
    partition: int | None,
    acks: _Acks,
) -> None:
    kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
    while True:
        try:
            producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=acks, **kwargs
            )
            return
        except BufferError:
            producer.poll(0.05)


def _flush(producer: Any, acks: _Acks, timeout: float = 60.0) -> None:
    left = producer.flush(timeout)
    if left or acks.failed:
        raise BrokerError(
            f"the broker did not acknowledge {left + len(acks.failed)} replay records "
            f"({acks.failed[:1]}); nothing beyond the last recorded position counts as done: "
            "run the replay again with --resume"
        )


def _throttle(began: float, enqueued: int, rate: float) -> None:
    ahead = enqueued / rate - (time.monotonic() - began)
    if ahead > 0:
        time.sleep(ahead)


def _headers(msg: Message) -> Headers | None:
    raw = msg.headers()
    if raw is None:
        return None
    return list(raw.items()) if isinstance(raw, dict) else list(raw)


def _as_bytes(value: object) -> bytes | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode()
    return value if isinstance(value, bytes) else None


def _read_replays(app: App) -> list[tuple[bytes | None, bytes | None]]:
    topic = replays_topic(app.settings.namespace)
    consumer: Consumer = reader.open_reader(app)
    try:
        parts = reader.partitions_of(consumer, topic)
        starts = {(topic, p): OFFSET_BEGINNING for p in parts}
        return [(m.key(), m.value()) for m in reader.read_range(consumer, starts)]
    finally:
        consumer.close()


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")
