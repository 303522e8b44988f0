"""A minimal thread pool for task execution.

Cheaper than ``concurrent.futures`` per item (no Future objects): the worker submits plain
callables and learns about completion through the callables' own side effects. Threads are
daemons so a forced shutdown never hangs on a stuck task.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

import structlog

__all__ = ["ThreadPool"]

log = structlog.get_logger("streamtasks.pool")

_STOP = object()


class ThreadPool:
    def __init__(self, size: int, *, name: str = "streamtasks-task") -> None:
        if size < 1:
            raise ValueError("pool size must be >= 1")
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]
        for t in self._threads:
            t.start()

    def submit(self, fn: Callable[[], None]) -> None:
        self._queue.put(fn)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                item()  # type: ignore[operator]
            except BaseException:  # the callable handles its own errors; this is a last resort
                log.exception("unexpected error in task thread")

    def shutdown(self, timeout: float = 5.0) -> None:
        for _ in self._threads:
            self._queue.put(_STOP)
        for t in self._threads:
            t.join(timeout)
