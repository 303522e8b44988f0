"""Typed records that travel inside task events: chord joins and outcomes, error callbacks.

* :class:`ChordJoin` — the continuation frame of a chord member (``chord_join.avsc``): which
  chord, which member, and what to send when all members are in;
* :class:`ChordMember` — one member's final outcome on ``{ns}.chords``
  (``chord_member.avsc``), read by the join;
* :class:`TaskFailure` — what an error callback receives.

Each Avro-encoded record has ``to_avro()`` and ``from_avro()``; ``from_avro`` takes a record
the codec already checked against the schema (so it does not validate again).

The worker builds a :class:`TaskFailure` from a failed task's outcome and sends it as the first
argument of each error callback; users annotate that parameter with it (re-exported as
``streamtasks.TaskFailure``). It lives with the wire contract because its fields are part of the
callback's Avro argument schema.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from streamtasks.wire.envelope import ErrorInfo

__all__ = ["ChordJoin", "ChordMember", "TaskFailure"]


@dataclass(frozen=True, slots=True)
class ChordJoin:
    """A chord member's continuation: member ``index`` of ``size`` in chord ``chord_id``;
    ``body`` (then ``rest``) is sent with the members' results, ``link_error`` on failure.
    The frames are encoded ``TaskSignature`` records."""

    chord_id: str
    index: int
    size: int
    body: bytes
    rest: tuple[bytes, ...] = ()
    link_error: tuple[bytes, ...] = ()

    def to_avro(self) -> dict[str, Any]:
        return {
            "chord_id": self.chord_id,
            "index": self.index,
            "size": self.size,
            "body": self.body,
            "rest": list(self.rest),
            "link_error": list(self.link_error),
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> ChordJoin:
        return cls(
            chord_id=str(rec["chord_id"]),
            index=int(rec["index"]),
            size=int(rec["size"]),
            body=rec["body"],
            rest=tuple(rec["rest"]),
            link_error=tuple(rec["link_error"]),
        )


@dataclass(frozen=True, slots=True)
class ChordMember:
    """One chord member's final outcome: ``join`` is its :class:`ChordJoin` frame unchanged,
    ``value`` its result frame on SUCCESS, ``error`` why it did not succeed otherwise."""

    join: bytes
    member_id: str
    task: str
    status: str
    value: bytes | None
    error: ErrorInfo | None
    finished_at: int

    def to_avro(self) -> dict[str, Any]:
        return {
            "join": self.join,
            "member_id": self.member_id,
            "task": self.task,
            "status": self.status,
            "value": self.value,
            "error": None if self.error is None else self.error.to_avro(),
            "finished_at": self.finished_at,
        }

    @classmethod
    def from_avro(cls, rec: dict[str, Any]) -> ChordMember:
        return cls(
            join=rec["join"],
            member_id=str(rec["member_id"]),
            task=str(rec["task"]),
            status=str(rec["status"]),
            value=rec["value"],
            error=ErrorInfo.from_avro(rec["error"]),
            finished_at=int(rec["finished_at"]),
        )


@dataclass(frozen=True)
class TaskFailure:
    """What an error callback receives as its first argument (annotate it with this type)."""

    task_id: str
    task: str
    status: str  # FAILURE or DEAD
    error_type: str
    message: str
    traceback: str | None
    attempts: int


# Its Avro record name is derived from module and class name, and events already queued for
# error callbacks carry that name: it stays ``streamtasks.workflows.TaskFailure`` (where the
# class lived first, and which still exports it) so that a move of the code changes no schema.
TaskFailure.__module__ = "streamtasks.workflows"
