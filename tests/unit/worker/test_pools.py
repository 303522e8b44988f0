"""The task pools end cleanly: nothing of a worker's threads or event loop outlives it."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings

import pytest

from streamtasks.worker.pools.aio import AsyncRunner
from streamtasks.worker.pools.threads import ThreadPool


@pytest.mark.timeout(20)
def test_async_runner_shutdown_closes_its_loop_and_cancels_what_is_pending() -> None:
    runner = AsyncRunner(2, name="test-aio")
    started = threading.Event()
    finished = threading.Event()
    cancelled = threading.Event()

    async def quick() -> None:
        finished.set()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner.submit(quick)
    runner.submit(forever)
    assert finished.wait(5) and started.wait(5)
    loop = runner._loop
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unclosed loop or socket would raise here
        runner.shutdown(timeout=5)
        gc.collect()
    assert cancelled.is_set()
    assert loop.is_closed()
    assert not runner._thread.is_alive()
    runner.shutdown(timeout=1)  # a second shutdown is a no-op


@pytest.mark.timeout(20)
def test_thread_pool_shutdown_without_waiting_still_ends_idle_threads() -> None:
    pool = ThreadPool(3, name="test-pool")
    pool.shutdown(timeout=0.0)
    for thread in pool._threads:
        thread.join(5)
        assert not thread.is_alive()
