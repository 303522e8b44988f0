"""Task event frames written fast: ``schemas/event.avsc`` in the Avro binary encoding, by hand.

A worker with per-task events on writes three event records per task. fastavro's
``schemaless_writer`` spends more on its per-call setup than on such a small record, so for
this one fixed schema the encoding (Avro 1.11 spec, "Binary Encoding": zig-zag varints,
length-prefixed UTF-8, a union as its branch index then the value) is written here, and the
fields one attempt's events share (task id, name, queue, attempt, worker, partition, offset) are
encoded once per attempt (:class:`AttemptFrames`). :func:`batch_frame` wraps many such frames
in one ``TaskEventBatch`` (``schemas/event_batch.avsc``: an array of ``bytes``), which is what a
worker writes: one record for the events of many tasks.

Invariants: :meth:`AttemptFrames.frame` returns exactly the bytes
:func:`~streamtasks.wire.events.encode_task_event` (fastavro) writes for the same event, and
:func:`batch_frame` those of :func:`~streamtasks.wire.events.encode_task_event_batch` — the
unit tests compare them; an event with an error (a nested record) is encoded by fastavro; a
change of event.avsc's fields fails at import, naming this module, instead of writing frames
that do not match the schema.
"""

from __future__ import annotations

import struct
from typing import Final

from streamtasks.errors import SchemaError
from streamtasks.wire.envelope import ErrorInfo
from streamtasks.wire.events import (
    EVENT_BATCH_SCHEMA,
    EVENT_SCHEMA,
    TASK_EVENT_BATCH_HEADER,
    TASK_EVENT_FRAME_HEADER,
    TaskEvent,
    TaskEventType,
    encode_task_event,
)

__all__ = ["AttemptFrames", "batch_frame"]

#: the field order the encoding below writes; event.avsc must have exactly these, in order
_FIELDS: Final = (
    "task_id",
    "task",
    "queue",
    "type",
    "attempt",
    "timestamp",
    "worker_id",
    "runtime_ms",
    "error",
    "partition",
    "offset",
)
if tuple(f["name"] for f in EVENT_SCHEMA["fields"]) != _FIELDS:  # pragma: no cover
    raise SchemaError(
        "schemas/event.avsc changed its fields: update streamtasks/wire/event_frames.py "
        "(the hand-written encoding of task events) to match"
    )

if [f["type"] for f in EVENT_BATCH_SCHEMA["fields"]] != [
    {"type": "array", "items": "bytes"}
]:  # pragma: no cover
    raise SchemaError(
        "schemas/event_batch.avsc changed: update streamtasks/wire/event_frames.py "
        "(the hand-written encoding of task event batches) to match"
    )

_NULL: Final = b"\x00"
_SOME: Final = b"\x02"  # union branch 1 (the non-null type)
_DOUBLE = struct.Struct("<d").pack
_ONE_BYTE: Final = [bytes((z,)) for z in range(0x80)]
_SIX_FROM: Final = 1 << 35
_SIX_TO: Final = 1 << 42
#: the encoded task name and queue of each (task, queue) seen (few: a worker's own tasks)
_NAMES: dict[tuple[str, str], bytes] = {}
_NAMES_MAX: Final = 4096


def _long(n: int) -> bytes:
    """An Avro int/long: zig-zag, then a little-endian base-128 varint."""
    z = (n << 1) ^ (n >> 63)
    if z < 0x80:  # most lengths, attempts and partitions
        return _ONE_BYTE[z]
    if _SIX_FROM <= z < _SIX_TO:  # six bytes: epoch-ms timestamps of 2001-2039, unrolled
        return bytes(
            (
                z & 0x7F | 0x80,
                z >> 7 & 0x7F | 0x80,
                z >> 14 & 0x7F | 0x80,
                z >> 21 & 0x7F | 0x80,
                z >> 28 & 0x7F | 0x80,
                z >> 35,
            )
        )
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _string(s: str) -> bytes:
    b = s.encode()
    return _long(len(b)) + b


def batch_frame(frames: list[bytes]) -> bytes:
    """The single-object frame of a ``TaskEventBatch`` of ``frames`` (TaskEvent frames): an
    Avro array as one block (its count, each item length-prefixed) and the end marker."""
    parts = [TASK_EVENT_BATCH_HEADER]
    if frames:
        parts.append(_long(len(frames)))
        for frame in frames:
            parts.append(_long(len(frame)))
            parts.append(frame)
    parts.append(_NULL)
    return b"".join(parts)


def _optional_long(n: int | None) -> bytes:
    return _NULL if n is None else _SOME + _long(n)


#: the enum index of each event type, read from the schema's symbol list
_TYPE: Final = {
    TaskEventType(s): _long(i)
    for i, s in enumerate(EVENT_SCHEMA["fields"][_FIELDS.index("type")]["type"]["symbols"])
}


class AttemptFrames:
    """The event frames of one task attempt, with the fields its events share encoded once."""

    __slots__ = ("_attempt", "_base", "_head", "_tail", "_worker")

    def __init__(
        self,
        task_id: str,
        task: str,
        queue: str,
        attempt: int,
        worker_id: str | None,
        partition: int | None,
        offset: int | None,
    ) -> None:
        self._base = (task_id, task, queue, attempt, worker_id, partition, offset)
        names = _NAMES.get((task, queue))
        if names is None:
            if len(_NAMES) >= _NAMES_MAX:
                _NAMES.clear()
            names = _NAMES[(task, queue)] = _string(task) + _string(queue)
        self._head = TASK_EVENT_FRAME_HEADER + _string(task_id) + names
        self._attempt = _long(attempt)
        self._worker = _NULL if worker_id is None else _SOME + _string(worker_id)
        self._tail = _optional_long(partition) + _optional_long(offset)

    def event(
        self,
        kind: TaskEventType,
        timestamp: int,
        runtime_ms: float | None = None,
        error: ErrorInfo | None = None,
    ) -> TaskEvent:
        """The event itself (what :meth:`frame` encodes)."""
        task_id, task, queue, attempt, worker_id, partition, offset = self._base
        return TaskEvent(
            task_id,
            task,
            queue,
            kind,
            attempt,
            timestamp,
            worker_id,
            runtime_ms,
            error,
            partition,
            offset,
        )

    def frame(
        self,
        kind: TaskEventType,
        timestamp: int,
        runtime_ms: float | None = None,
        error: ErrorInfo | None = None,
    ) -> bytes:
        """The single-object frame of this attempt's ``kind`` event."""
        if error is not None:  # a nested record: the rare path, written by fastavro
            return encode_task_event(self.event(kind, timestamp, runtime_ms, error))
        runtime = _NULL if runtime_ms is None else _SOME + _DOUBLE(runtime_ms)
        return b"".join(
            (
                self._head,
                _TYPE[kind],
                self._attempt,
                _long(timestamp),
                self._worker,
                runtime,
                _NULL,
                self._tail,
            )
        )
