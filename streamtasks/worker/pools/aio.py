"""An event loop on its own thread for ``async def`` tasks.

Invariants: one loop per worker, started lazily; at most ``concurrency`` task coroutines run
at once (the rest wait on a semaphore inside the loop, never blocking the poll thread);
submitting is thread-safe.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

__all__ = ["AsyncRunner"]

log = structlog.get_logger("streamtasks.aio")


class AsyncRunner:
    def __init__(self, concurrency: int, *, name: str = "streamtasks-aio") -> None:
        if concurrency < 1:
            raise ValueError("async concurrency must be >= 1")
        self._loop = asyncio.new_event_loop()
        self._limit = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_forever()

    def submit(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``make()`` on the loop (from any thread)."""
        self._loop.call_soon_threadsafe(self._start, make)

    def _start(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        task = self._loop.create_task(self._guarded(make))
        self._tasks.add(task)  # keep a reference until done (the loop holds only weak ones)
        task.add_done_callback(self._tasks.discard)

    async def _guarded(self, make: Callable[[], Coroutine[Any, Any, None]]) -> None:
        async with self._limit:
            try:
                await make()
            except BaseException:  # the coroutine handles task errors; this is a last resort
                log.exception("unexpected error in async task runner")

    def shutdown(self, timeout: float = 5.0) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout)
