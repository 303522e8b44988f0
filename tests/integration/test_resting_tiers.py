"""Idle retry-tier partitions rest (paused a while) and miss nothing (real broker).

The test app's tiers are 1, 2 and 5 s and its fetch wait 10 ms: an idle tier partition
rests 0.25 s at a time once it fetched nothing for 70 ms (see PartitionFlow).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from streamtasks import App
from streamtasks.wire.topics import retry_topic
from streamtasks.worker import Worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _all_rest_at_once(worker: Worker, tiers: set[tuple[str, int]], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if worker._s.flow.resting() >= tiers:
            return True
        time.sleep(0.005)
    return False


def _counted(worker: Worker, *, retried: int, succeeded: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (worker.stats.retried, worker.stats.succeeded) == (retried, succeeded):
            return True
        time.sleep(0.005)
    return False


def test_retries_written_while_the_tier_partitions_rest_all_run(
    app: App, run_worker: Callable[..., Worker], ns: str
) -> None:
    # Given an idle worker whose retry-tier partitions rest
    worker = run_worker()
    tiers = {
        (retry_topic(ns, "default", n), p)
        for n in range(1, len(app.settings.retry_tiers) + 1)
        for p in range(app.settings.retry_partition_count)
    }
    assert _all_rest_at_once(worker, tiers, 10), "the idle tier partitions never all rested"
    # When 40 tasks fail once each: their retries land in tier 1 while its partitions rest
    # or wake, and the worker picks them up after the 1 s backoff
    t0 = time.monotonic()
    handles = [app.tasks["flaky"].send(1) for _ in range(40)]
    # Then every one runs again and succeeds, none is missed
    assert [h.get(timeout=60) for h in handles] == [2] * 40
    # (a worker counts a task once its result's write is acknowledged, which can come a
    # moment after the result itself reached the listener)
    assert _counted(worker, retried=40, succeeded=40, timeout=10), worker.stats
    # ... within the backoff, a rest and a generous tick of a loaded machine
    assert time.monotonic() - t0 < 1.0 + 0.25 + 5.0
    # And, idle again, the tier partitions go back to resting
    assert _all_rest_at_once(worker, tiers, 10), "the tier partitions no longer rest"
