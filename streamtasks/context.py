"""The running task's own view of itself: ``current_task()`` inside a task body.

Invariant: set by the worker around each task call and reset afterwards (a ContextVar, so
threads and asyncio tasks each see their own).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass

from streamtasks.errors import StreamtasksError

__all__ = ["TaskContext", "current_task", "current_traceparent"]


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
    #: the W3C ``traceparent`` the task continues (and its follow-on records carry), if any
    traceparent: str | None = None


class _Pending:
    """What the worker sets per task: the inputs of a :class:`TaskContext`, which is built
    only if the task asks (most never do, and building it costs more than the lookup)."""

    __slots__ = ("_build", "_built", "traceparent")

    def __init__(self, build: Callable[[], TaskContext], traceparent: str | None = None) -> None:
        self._build = build
        self._built: TaskContext | None = None
        self.traceparent = traceparent  # read by send() from inside the task, without a build

    def get(self) -> TaskContext:
        if self._built is None:
            self._built = self._build()
        return self._built


_current: ContextVar[_Pending | None] = ContextVar("streamtasks_current_task", default=None)


def current_task() -> TaskContext:
    """The task being run by this thread / asyncio task (``.id``, ``.attempt``, ...)."""
    pending = _current.get()
    if pending is None:
        raise StreamtasksError("current_task() is only available inside a running task")
    return pending.get()


def current_traceparent() -> str | None:
    """The running task's ``traceparent`` (None outside a task, or when it has none)."""
    pending = _current.get()
    return None if pending is None else pending.traceparent
