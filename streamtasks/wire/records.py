"""Typed records that travel inside task events: what an error callback receives.

The worker builds a :class:`TaskFailure` from a failed task's outcome and sends it as the first
argument of each error callback; users annotate that parameter with it (re-exported as
``streamtasks.TaskFailure``). It lives with the wire contract because its fields are part of the
callback's Avro argument schema.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["TaskFailure"]


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
