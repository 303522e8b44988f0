"""What is on ``{ns}.events``: task lifecycle events and worker heartbeats, and their frames.

Three record types share the topic, told apart by the :data:`~streamtasks.wire.headers.KIND`
header without decoding: :class:`TaskEvent` (``schemas/event.avsc``, key = task id, kind
``task``: the client's SENT, a replay's REPLAYED), a batch of task event frames
(``schemas/event_batch.avsc``, key = worker id, kind ``task-batch``: what workers write, the
events of many tasks in one record) and :class:`WorkerHeartbeat` (``schemas/heartbeat.avsc``,
key = worker id, kind ``heartbeat``). Times are epoch milliseconds (UTC).

Invariants: events are always written in the Avro single-object encoding (also where the app
uses a schema registry), so any reader decodes them with the shipped schemas alone;
:func:`decode_event` never raises anything but :class:`EventDecodeError` (which keeps the raw
bytes), so one bad record cannot end a reader; :func:`decode_events` expands a batch into its
events (and a single event or heartbeat into itself); :meth:`TaskEvent.as_dict` and
:meth:`WorkerHeartbeat.as_dict` give the JSON shape the CLI prints and the dashboard reads.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from streamtasks.errors import DecodeError
from streamtasks.wire import headers as hdr
from streamtasks.wire.codec import Codec, load_builtin_schema
from streamtasks.wire.envelope import ErrorInfo, now_ms

__all__ = [
    "COUNTERS",
    "EVENT_SCHEMA",
    "HEARTBEAT_SCHEMA",
    "KIND_HEARTBEAT",
    "KIND_TASK",
    "KIND_TASK_BATCH",
    "TASK_EVENT_FRAME_HEADER",
    "Event",
    "EventDecodeError",
    "TaskEvent",
    "TaskEventType",
    "WorkerHeartbeat",
    "WorkerState",
    "decode_event",
    "decode_events",
    "encode_heartbeat",
    "encode_task_event",
    "encode_task_event_batch",
    "event_headers",
    "event_headers_of",
    "event_key",
    "event_record",
    "kind_of",
]

#: the :data:`~streamtasks.wire.headers.KIND` header of a task event (key = task id)
KIND_TASK: Final = "task"
#: the :data:`~streamtasks.wire.headers.KIND` header of a batch of task event frames (key =
#: worker id)
KIND_TASK_BATCH: Final = "task-batch"
#: the :data:`~streamtasks.wire.headers.KIND` header of a worker heartbeat (key = worker id)
KIND_HEARTBEAT: Final = "heartbeat"

EVENT_SCHEMA: dict[str, Any] = load_builtin_schema("event.avsc")
HEARTBEAT_SCHEMA: dict[str, Any] = load_builtin_schema("heartbeat.avsc")
EVENT_BATCH_SCHEMA: dict[str, Any] = load_builtin_schema("event_batch.avsc")

#: the counters every heartbeat carries (its ``counters`` map may hold more)
COUNTERS = ("received", "succeeded", "failed", "retried", "dead", "expired", "revoked")

_CODEC = Codec()
_EVENT = _CODEC.register(EVENT_SCHEMA)
_HEARTBEAT = _CODEC.register(HEARTBEAT_SCHEMA)
_BATCH = _CODEC.register(EVENT_BATCH_SCHEMA)
#: the single-object header every task event frame starts with (its schema's fingerprint)
TASK_EVENT_FRAME_HEADER: Final = _EVENT.header
#: the single-object header of a batch of task event frames
TASK_EVENT_BATCH_HEADER: Final = _BATCH.header


class EventDecodeError(DecodeError):
    """A record on ``{ns}.events`` that is not a TaskEvent or WorkerHeartbeat frame."""


class TaskEventType(enum.StrEnum):
    SENT = "SENT"
    RECEIVED = "RECEIVED"
    STARTED = "STARTED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    RETRIED = "RETRIED"
    DEAD = "DEAD"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"
    REPLAYED = "REPLAYED"


class WorkerState(enum.StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"


@dataclass(frozen=True, slots=True)
class TaskEvent:
    """One step of a task's life (``schemas/event.avsc``)."""

    task_id: str
    task: str
    queue: str
    type: TaskEventType
    attempt: int = 1
    timestamp: int = field(default_factory=now_ms)
    worker_id: str | None = None
    runtime_ms: float | None = None
    error: ErrorInfo | None = None
    partition: int | None = None
    offset: int | None = None

    kind: ClassVar[str] = KIND_TASK

    def to_avro(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "task": self.task,
            "queue": self.queue,
            "type": self.type.value,
            "attempt": self.attempt,
            "timestamp": self.timestamp,
            "worker_id": self.worker_id,
            "runtime_ms": self.runtime_ms,
            "error": None if self.error is None else self.error.to_avro(),
            "partition": self.partition,
            "offset": self.offset,
        }

    @classmethod
    def from_avro(cls, rec: Mapping[str, Any]) -> TaskEvent:
        return cls(
            task_id=rec["task_id"],
            task=rec["task"],
            queue=rec["queue"],
            type=TaskEventType(rec["type"]),
            attempt=rec["attempt"],
            timestamp=rec["timestamp"],
            worker_id=rec["worker_id"],
            runtime_ms=rec["runtime_ms"],
            error=ErrorInfo.from_avro(rec["error"]),
            partition=rec["partition"],
            offset=rec["offset"],
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the Avro fields plus ``kind``."""
        return {"kind": self.kind, **self.to_avro()}


@dataclass(frozen=True, slots=True)
class WorkerHeartbeat:
    """A worker process's heartbeat (``schemas/heartbeat.avsc``)."""

    worker_id: str
    host: str
    pid: int
    group_id: str
    queues: tuple[str, ...]
    concurrency: int
    in_flight: int
    started_at: int
    interval_ms: int
    state: WorkerState = WorkerState.ONLINE
    timestamp: int = field(default_factory=now_ms)
    counters: Mapping[str, int] = field(default_factory=dict)
    queue_counters: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    partitions: tuple[str, ...] = ()
    events: bool = False

    kind: ClassVar[str] = KIND_HEARTBEAT

    def to_avro(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "group_id": self.group_id,
            "queues": list(self.queues),
            "concurrency": self.concurrency,
            "in_flight": self.in_flight,
            "started_at": self.started_at,
            "timestamp": self.timestamp,
            "interval_ms": self.interval_ms,
            "state": self.state.value,
            "counters": dict(self.counters),
            "queue_counters": {q: dict(c) for q, c in self.queue_counters.items()},
            "partitions": list(self.partitions),
            "events": self.events,
        }

    @classmethod
    def from_avro(cls, rec: Mapping[str, Any]) -> WorkerHeartbeat:
        return cls(
            worker_id=rec["worker_id"],
            host=rec["host"],
            pid=rec["pid"],
            group_id=rec["group_id"],
            queues=tuple(rec["queues"]),
            concurrency=rec["concurrency"],
            in_flight=rec["in_flight"],
            started_at=rec["started_at"],
            timestamp=rec["timestamp"],
            interval_ms=rec["interval_ms"],
            state=WorkerState(rec["state"]),
            counters=dict(rec["counters"]),
            queue_counters={q: dict(c) for q, c in rec["queue_counters"].items()},
            partitions=tuple(rec["partitions"]),
            events=rec["events"],
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the Avro fields plus ``kind``."""
        return {"kind": self.kind, **self.to_avro()}


#: what :func:`decode_event` returns
Event = TaskEvent | WorkerHeartbeat

_HeaderInput = Sequence[tuple[str, str | bytes | None]] | Mapping[str, str | bytes | None] | None


_SCHEMA_OF = {KIND_TASK: _EVENT, KIND_HEARTBEAT: _HEARTBEAT, KIND_TASK_BATCH: _BATCH}


def encode_task_event(event: TaskEvent) -> bytes:
    return _CODEC.encode(_EVENT, event.to_avro())


def encode_task_event_batch(frames: Sequence[bytes]) -> bytes:
    """A ``TaskEventBatch`` frame holding ``frames`` (TaskEvent frames) as they are."""
    return _CODEC.encode(_BATCH, {"events": list(frames)})


def encode_heartbeat(heartbeat: WorkerHeartbeat) -> bytes:
    return _CODEC.encode(_HEARTBEAT, heartbeat.to_avro())


def event_key(event: Event) -> bytes:
    """The record key: the task id of a task event, the worker id of a heartbeat."""
    return (event.task_id if isinstance(event, TaskEvent) else event.worker_id).encode()


def event_headers(event: Event) -> hdr.HeaderList:
    """The headers of an events record: its kind (and, for a task event, the task name)."""
    if isinstance(event, TaskEvent):
        return event_headers_of(event.task)
    return [(hdr.KIND, KIND_HEARTBEAT.encode())]


def event_headers_of(task: str) -> hdr.HeaderList:
    """The headers of a task event of task ``task``."""
    return [(hdr.KIND, KIND_TASK.encode()), (hdr.TASK, task.encode())]


def event_record(event: Event) -> tuple[bytes, bytes, hdr.HeaderList]:
    """``(key, value, headers)`` of ``event``'s record on ``{ns}.events``."""
    value = encode_task_event(event) if isinstance(event, TaskEvent) else encode_heartbeat(event)
    return event_key(event), value, event_headers(event)


def kind_of(headers: _HeaderInput) -> str | None:
    """The :data:`~streamtasks.wire.headers.KIND` header's value (None when absent)."""
    items = headers.items() if isinstance(headers, Mapping) else headers or ()
    found: str | None = None
    for name, value in items:
        if name == hdr.KIND and value is not None:
            found = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    return found


def decode_event(value: bytes | None, headers: _HeaderInput = None) -> Event:
    """Decode an events record holding one event; :class:`EventDecodeError` when it is not
    one (a batch of task events is not one event: :func:`decode_events` expands it)."""
    schema, rec = _decode(value, headers)
    if schema is _BATCH:
        raise EventDecodeError("a batch of task events: use decode_events", raw=value)
    return _event_of(schema, rec, value)


def decode_events(value: bytes | None, headers: _HeaderInput = None) -> list[Event]:
    """The events of an events record: a batch's task events in order, else the one event.

    :class:`EventDecodeError` when the record is not one; a batch item that is not a
    TaskEvent frame fails the whole record, with that item's raw bytes.
    """
    schema, rec = _decode(value, headers)
    if schema is not _BATCH:
        return [_event_of(schema, rec, value)]
    items = rec.get("events")
    if not isinstance(items, list):
        raise EventDecodeError("malformed events batch: no events array", raw=value)
    events: list[Event] = []
    for item in items:
        item_schema, item_rec = _decode(item, None)
        if item_schema is not _EVENT:
            raise EventDecodeError("an events batch item is not a TaskEvent frame", raw=item)
        events.append(_event_of(item_schema, item_rec, item))
    return events


def _decode(value: bytes | None, headers: _HeaderInput) -> tuple[object, dict[str, Any]]:
    kind = kind_of(headers)
    if kind is not None and kind not in _SCHEMA_OF:
        raise EventDecodeError(f"unknown events record kind {kind!r}", raw=value)
    expect = _SCHEMA_OF[kind] if kind is not None else None  # no header: by fingerprint
    try:
        schema, rec = _CODEC.decode(value, expect=expect)
    except DecodeError as exc:
        raise EventDecodeError(f"not an events record: {exc}", raw=value) from exc
    if not isinstance(rec, dict):
        raise EventDecodeError("malformed events record: not a record", raw=value)
    return schema, rec


def _event_of(schema: object, rec: Mapping[str, Any], value: bytes | None) -> Event:
    try:
        if schema is _HEARTBEAT:
            return WorkerHeartbeat.from_avro(rec)
        return TaskEvent.from_avro(rec)
    except (KeyError, ValueError, TypeError) as exc:
        raise EventDecodeError(f"malformed events record: {exc!r}", raw=value) from exc
