"""The running task's own view of itself: ``current_task()`` inside a task body.

Invariant: set by the worker around each task call and reset afterwards (a ContextVar, so
threads and asyncio tasks each see their own).
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass

from streamtasks.errors import StreamtasksError

__all__ = ["TaskContext", "current_task"]


@dataclass(frozen=True)
class TaskContext:
    id: str
    name: str
    queue: str
    attempt: int
    key: bytes | None
    root_id: str | None
    parent_id: str | None
    worker_id: str
    topic: str
    partition: int
    offset: int


_current: ContextVar[TaskContext | None] = ContextVar("streamtasks_current_task", default=None)


def current_task() -> TaskContext:
    """The task being run by this thread / asyncio task (``.id``, ``.attempt``, ...)."""
    ctx = _current.get()
    if ctx is None:
        raise StreamtasksError("current_task() is only available inside a running task")
    return ctx
