"""The worker reads its output producer's statistics (real broker, real librdkafka JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from streamtasks import App
from streamtasks.worker import Worker, session

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_the_busy_wait_watch_reads_the_output_producers_statistics(
    app: App, run_worker: Callable[..., Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose output producer reports statistics every 200 ms
    monkeypatch.setattr(session, "STATS_INTERVAL_MS", 200)
    worker = run_worker()
    watch = worker._s.busy_wait
    assert watch is not None
    # When it runs tasks (its producer writes their results)
    handles = [app.tasks["add"].send(i, i) for i in range(50)]
    assert [h.get(timeout=60) for h in handles] == [2 * i for i in range(50)]
    # Then the watch reads librdkafka's reports, and finds the broker's wake-ups and the
    # ProduceRequests in them (so the warning can fire: the field names are librdkafka's)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if watch.reports >= 2 and watch.totals is not None and watch.totals[1] > 0:
            break
        time.sleep(0.05)
    assert watch.totals is not None, "no statistics report reached the watch"
    wakeups, produces = watch.totals
    assert produces > 0 and wakeups > 0
