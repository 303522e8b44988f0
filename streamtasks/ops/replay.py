"""Replay: re-enqueue the task events of a time range of a queue, resumably, once per replay.

A replay is defined by a :class:`ReplaySpec` (queue, time range, filters) under a replay id.
It reads ``{ns}.tasks.{queue}`` from the first record timestamped at or after the range's start
(less a margin for timestamps out of order, :data:`SKEW_MS`) and re-enqueues every selected
event to the same topic and partition, with the same key:

* the **range** is ``[start, end)`` in epoch ms against each record's own timestamp: a record
  stamped exactly ``start`` is selected, one stamped exactly ``end`` is not. ``end`` is clamped
  to the replay's creation time, so a replay never selects what it enqueued itself;
* **filters**: task names, record key, and the task id's latest status in the result store
  (``PENDING`` when it has no result). Events a replay enqueued (``st-replay`` header) are
  never selected again — replay the original range instead;
* the **re-enqueued event** has the same task id (``--new-ids``: a fresh id, the original in
  the ``st-replay-of`` header), attempt 1, no eta, no expiry, no last error, and the headers
  ``st-replay`` (the replay id) and ``st-replay-origin`` (``topic:partition:offset``).
  Workers run it even when the id already has a final result (see
  :mod:`streamtasks.worker.executor`), and its new result supersedes the old one.

Progress and "never twice": the spec and, per partition, the position up to which every
selected event was enqueued *and acknowledged* are recorded in the compacted ``{ns}.replays``
topic (keys ``{id}`` and ``{id}/{partition}``). Running a replay id again (``--resume``) starts
each partition at its position and, for the events after it (enqueued before an interruption but
not yet recorded), consults the queue's topic itself: every record carrying this replay id's
``st-replay`` header names its origin, and an origin found there is not enqueued again. A new
replay id replays the range again, which is its purpose.

The pure half (times, the spec and its selection rule, the replayed event and headers, the
progress fold) is :mod:`streamtasks.ops.replayspec`; this module reads, enqueues and records.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

import structlog

from streamtasks.config import KafkaValue
from streamtasks.errors import BrokerError, ConfigError, DecodeError
from streamtasks.kafka import clients, reader
from streamtasks.kafka.delivery import Acks, produce_with_room
from streamtasks.ops.replayspec import (
    SKEW_MS,
    Progress,
    ReplayCandidate,
    ReplayPlan,
    ReplaySpec,
    ReplaySummary,
    fold_progress,
    iso,
    new_replay_id,
    parse_statuses,
    parse_time,
    replay_headers,
    replayed_envelope,
)
from streamtasks.ops.store import ResultStore
from streamtasks.wire.envelope import Envelope, TaskStatus, now_ms
from streamtasks.wire.events import TaskEvent, TaskEventType, event_record
from streamtasks.wire.topics import (
    REPLAY_HEADER,
    REPLAY_ORIGIN_HEADER,
    Headers,
    TopicSpec,
    events_topic,
    replays_topic,
    task_topic,
)

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.kafka import Message

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

_FLUSH_EVERY = 500  # selected events between recorded positions ...
_FLUSH_EVERY_S = 1.0  # ... or seconds, whichever comes first


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
        unknown = sorted(set(tasks) - set(app.tasks))
        if unknown:
            raise ConfigError(
                f"unknown task(s) {unknown}; app {app.name!r} has {sorted(app.tasks)}"
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
        """What this replay selects (reads only). For a recorded replay: from its recorded
        positions on, as :meth:`run` will."""
        counts: Counter[tuple[str, str]] = Counter()
        sample: list[dict[str, Any]] = []
        undecodable = [0]
        for cand in self._candidates(undecodable, resume=self._loaded):
            counts[(cand.env.task, cand.status.value)] += 1
            if len(sample) < sample_size:
                sample.append(
                    {
                        "task_id": cand.env.id,
                        "task": cand.env.task,
                        "status": cand.status.value,
                        "partition": cand.partition,
                        "offset": cand.offset,
                        "timestamp": iso(cand.ts_ms),
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
                start = reader.offset_for_time(consumer, self.topic, p, spec.start_ms - SKEW_MS)
                if resume:
                    start = max(start, self.progress.positions.get(p, 0))
                starts[(self.topic, p)] = start
            late = spec.end_ms + SKEW_MS
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
        producer = clients.make_producer(self.app.settings.producer(**cfg))
        acks = Acks()
        self._record(producer, spec.replay_id, spec.to_json(), acks)
        _flush(producer, acks)
        done = self._already_enqueued() if resume else set()
        selected = enqueued = skipped = 0
        saved: float | None = None  # when positions were last recorded (first: at the start)
        first = 0.0
        read_to: dict[int, int] = {}
        undecodable = [0]
        for cand in self._candidates(undecodable, resume=resume):
            selected += 1
            if cand.origin in done:
                skipped += 1
            else:
                if saved is None:  # the first enqueue: the rate and the saves count from here
                    saved = time.monotonic()
                    first = saved
                self._enqueue(producer, cand, acks)
                enqueued += 1
                if rate:
                    _throttle(first, enqueued - 1, rate)
            read_to[cand.partition] = cand.offset + 1
            if saved is not None and (
                selected % _FLUSH_EVERY == 0 or time.monotonic() - saved > _FLUSH_EVERY_S
            ):
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

    def _enqueue(self, producer: Any, cand: ReplayCandidate, acks: Acks) -> None:
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
        if self.app.events:  # acknowledged like the event itself, before the position is
            replayed = TaskEvent(env.id, env.task, env.queue, TaskEventType.REPLAYED)
            events = events_topic(self.app.settings.namespace)
            key, value, headers = event_record(replayed)
            _produce(producer, events, value, key=key, headers=headers, partition=None, acks=acks)

    def _save_positions(self, producer: Any, read_to: Mapping[int, int], acks: Acks) -> None:
        """Every event read so far was enqueued and acknowledged: record how far."""
        _flush(producer, acks)
        for partition, nxt in read_to.items():
            value = json.dumps({"next": nxt}).encode()
            self._record(producer, f"{self.spec.replay_id}/{partition}", value, acks)
        _flush(producer, acks)

    def _record(self, producer: Any, key: str, value: bytes, acks: Acks) -> None:
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
            starts = reader.starts_since(consumer, [self.topic], spec.created_ms - SKEW_MS)
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
        admin = clients.make_admin(settings.admin())
        clients.check_reachable(admin, settings.require_bootstrap(), timeout=5.0)
        clients.apply_topics(
            admin,
            [TopicSpec(replays_topic(settings.namespace), 1, {"cleanup.policy": "compact"})],
            replication_factor=settings.replication_factor,
        )


# -- helpers ---------------------------------------------------------------------------------
def _produce(
    producer: Any,
    topic: str,
    value: bytes,
    *,
    key: bytes,
    headers: Headers,
    partition: int | None,
    acks: Acks,
) -> None:
    produce_with_room(
        producer, topic, value, key=key, headers=headers, on_delivery=acks, partition=partition
    )


def _flush(producer: Any, acks: Acks, timeout: float = 60.0) -> None:
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
    return [(m.key(), m.value()) for m in reader.read_to_end(app, [topic])]
