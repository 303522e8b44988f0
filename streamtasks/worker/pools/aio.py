"""An event loop on its own thread for ``async def`` tasks.

Invariants: one loop per worker, started lazily; at most ``concurrency`` task coroutines run
at once (the rest wait on a semaphore inside the loop, never blocking the poll thread);
submitting is thread-safe; after :meth:`AsyncRunner.shutdown` the loop is closed by its own
thread (coroutines still pending are cancelled first), so nothing of it outlives the worker.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

__all__ = ["AsyncRunner"]

log = structlog.get_logger("streamtasks.aio")

_CANCEL_GRACE = 1.0  # seconds cancelled coroutines get to unwind at shutdown


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
        try:
            self._loop.run_forever()
        finally:
            self._close_loop()

    def _close_loop(self) -> None:
        """On the loop's thread once it stopped: cancel what is left (a forced stop; those
        records were not committed and come back), then close the loop and its self-pipe."""
        loop = self._loop
        try:
            pending = asyncio.all_tasks(loop)
            for task in pending:
                task.cancel()
            if pending:
                loop.run_until_complete(asyncio.wait(pending, timeout=_CANCEL_GRACE))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()

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
        """Stop the loop and wait up to ``timeout`` for its thread (which then closes it)."""
        if self._loop.is_closed():
            return
        try:
            self._loop.call_soon_threadsafe(self._loop.stop)
        except RuntimeError:  # closed between the check and the call
            return
        self._thread.join(timeout)
