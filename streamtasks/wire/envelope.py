"""Task envelopes and result records: the two message types streamtasks puts on the wire.

Both are frozen dataclasses mirrored one-to-one by ``schemas/envelope.avsc`` and
``schemas/result.avsc``. Times are epoch milliseconds (UTC) on the wire and in these classes.
The task's own arguments and return value are nested frames (``args``/``value``; single-object,
or Confluent-framed with a schema registry) encoded with the task's derived schemas, so an
envelope can be read without knowing the task.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field
from typing import Any

from streamtasks.wire.codec import Codec, KnownSchema, load_builtin_schema
from streamtasks.wire.quickinit import quick_init

__all__ = [
    "CHORD_JOIN_SCHEMA",
    "CHORD_MEMBER_SCHEMA",
    "ENVELOPE_SCHEMA",
    "OLD_ENVELOPE_SCHEMAS",
    "RESULT_SCHEMA",
    "SIGNATURE_SCHEMA",
    "Envelope",
    "ErrorInfo",
    "ResultRecord",
    "TaskStatus",
    "new_envelope_avro",
    "now_ms",
    "register_builtin",
]

ENVELOPE_SCHEMA: dict[str, Any] = load_builtin_schema("envelope.avsc")
RESULT_SCHEMA: dict[str, Any] = load_builtin_schema("result.avsc")
SIGNATURE_SCHEMA: dict[str, Any] = load_builtin_schema("signature.avsc")
CHORD_JOIN_SCHEMA: dict[str, Any] = load_builtin_schema("chord_join.avsc")
CHORD_MEMBER_SCHEMA: dict[str, Any] = load_builtin_schema("chord_member.avsc")
#: earlier versions of the envelope, still read (resolved into the current one), never written
OLD_ENVELOPE_SCHEMAS: tuple[dict[str, Any], ...] = (load_builtin_schema("envelope.v1.avsc"),)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class TaskStatus(enum.StrEnum):
    PENDING = "PENDING"
    STARTED = "STARTED"
    RETRY = "RETRY"
    SUCCESS = "SUCCESS"
    FAILURE = "FAILURE"
    DEAD = "DEAD"
    EXPIRED = "EXPIRED"
    REVOKED = "REVOKED"

    @property
    def is_final(self) -> bool:
        return self not in (TaskStatus.PENDING, TaskStatus.STARTED, TaskStatus.RETRY)


#: each status as plain text (what the Avro enum takes), looked up per record
_STATUS_TEXT = {s: s.value for s in TaskStatus}
#: and back (a dict look-up is a fraction of the ``TaskStatus(text)`` call, on every result read)
_STATUS_OF = {s.value: s for s in TaskStatus}


@quick_init
@dataclass(frozen=True, slots=True)
class ErrorInfo:
    type: str
    message: str
    traceback: str | None = None

    def to_avro(self) -> dict[str, Any]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}

    @classmethod
    def from_avro(cls, rec: dict[str, Any] | None) -> ErrorInfo | None:
        if rec is None:
            return None
        return cls(rec["type"], rec["message"], rec["traceback"])


@quick_init
@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    task: str
    queue: str
    args: bytes
    attempt: int = 1
    created_at: int = field(default_factory=now_ms)
    eta: int | None = None
    expires: int | None = None
    parent_id: str | None = None
    root_id: str | None = None
    workflow_id: str | None = None
    continuation: tuple[bytes, ...] = ()
    last_error: ErrorInfo | None = None
    link_error: tuple[bytes, ...] = ()

    def to_avro(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "task": self.task,
            "queue": self.queue,
            "attempt": self.attempt,
            "created_at": self.created_at,
            "eta": self.eta,
            "expires": self.expires,
            "parent_id": self.parent_id,
            "root_id": self.root_id,
            "workflow_id": self.workflow_id,
            "continuation": list(self.continuation),
            "last_error": None if self.last_error is None else self.last_error.to_avro(),
            "args": self.args,
            "link_error": list(self.link_error),
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> Envelope:
        return cls(
            id=rec["id"],
            task=rec["task"],
            queue=rec["queue"],
            args=rec["args"],
            attempt=rec["attempt"],
            created_at=rec["created_at"],
            eta=rec["eta"],
            expires=rec["expires"],
            parent_id=rec["parent_id"],
            root_id=rec["root_id"],
            workflow_id=rec["workflow_id"],
            continuation=tuple(rec["continuation"]),
            last_error=None
            if rec["last_error"] is None
            else ErrorInfo.from_avro(rec["last_error"]),
            link_error=tuple(rec["link_error"]),
        )


def new_envelope_avro(
    task_id: str,
    task: str,
    queue: str,
    args: bytes,
    created_at: int,
    eta: int | None,
    expires: int | None,
) -> dict[str, Any]:
    """``Envelope(id=task_id, ..., root_id=task_id).to_avro()`` of a new first-attempt task,
    built directly (a bulk send's path: no dataclass per task). The unit tests hold the two
    equal."""
    return {
        "id": task_id,
        "task": task,
        "queue": queue,
        "attempt": 1,
        "created_at": created_at,
        "eta": eta,
        "expires": expires,
        "parent_id": None,
        "root_id": task_id,
        "workflow_id": None,
        "continuation": [],
        "last_error": None,
        "args": args,
        "link_error": [],
    }


@quick_init
@dataclass(frozen=True, slots=True)
class ResultRecord:
    task_id: str
    task: str
    status: TaskStatus
    attempts: int
    created_at: int
    worker_id: str | None = None
    started_at: int | None = None
    finished_at: int | None = None
    value: bytes | None = None
    error: ErrorInfo | None = None

    def to_avro(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "task": self.task,
            "status": _STATUS_TEXT[self.status],
            "attempts": self.attempts,
            "worker_id": self.worker_id,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "value": self.value,
            "error": None if self.error is None else self.error.to_avro(),
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> ResultRecord:
        return cls(
            task_id=rec["task_id"],
            task=rec["task"],
            status=_STATUS_OF.get(rec["status"]) or TaskStatus(rec["status"]),
            attempts=rec["attempts"],
            worker_id=rec["worker_id"],
            created_at=rec["created_at"],
            started_at=rec["started_at"],
            finished_at=rec["finished_at"],
            value=rec["value"],
            error=ErrorInfo.from_avro(rec["error"]),
        )


def register_builtin(codec: Codec) -> tuple[KnownSchema, KnownSchema]:
    """Register the envelope (and its older versions, for reading) and result schemas with
    ``codec``; returns the current envelope and result schemas."""
    envelope = codec.register(ENVELOPE_SCHEMA)
    for old in OLD_ENVELOPE_SCHEMAS:
        codec.register_old(old, envelope)
    return envelope, codec.register(RESULT_SCHEMA)
