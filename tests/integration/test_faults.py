"""Fault tests: real worker processes killed with SIGKILL mid-run; nothing may be lost."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import pytest
from confluent_kafka import Message

from streamtasks import App
from streamtasks.testing import consume_all
from streamtasks.wire.topics import results_topic
from tests.integration.conftest import StartWorkers

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def _wait_until(predicate: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _distinct_keys(n: int) -> Callable[[list[Message]], bool]:
    return lambda msgs: len({m.key() for m in msgs}) >= n


def test_kill_9_mid_run_loses_nothing(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    n = 3000
    # Given one worker (4 threads) working through 3,000 tasks of ~10 ms each
    (victim,) = start_workers(1, "--concurrency", "4")
    handles = [app.tasks["work"].send(i, sleep_ms=10) for i in range(n)]
    app.flush()
    # When it is killed -9 after about a third of them finished
    _wait_until(lambda: sum(h.ready() for h in handles) >= n // 3, 60, "a third done")
    victim.kill()
    done_before = sum(h.ready() for h in handles)
    assert done_before < n, "the run finished before the kill; the test proves nothing"
    # And a new worker takes over
    start_workers(1, "--concurrency", "4")
    # Then every task id has a result with its own value (lost = 0)
    values = [h.get(timeout=120) for h in handles]
    assert values == list(range(n))
    records = consume_all(kafka_bootstrap, results_topic(ns), expect=_distinct_keys(n), timeout=30)
    per_id = Counter(m.key() for m in records)
    lost = n - len(per_id)
    duplicates = sum(c - 1 for c in per_id.values())
    print(
        f"\nkill -9 run: tasks={n} done_before_kill={done_before} lost={lost} "
        f"duplicates={duplicates}"
    )
    assert lost == 0
    # Duplicates are the victim's tasks finished after its last offset commit: at most its
    # in-flight window plus one auto-commit interval (1 s) of throughput (4 threads / 10 ms).
    assert duplicates <= 128 + 4 * 100


def test_sigterm_drains_in_flight_tasks_and_commits(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    # Given a worker busy with 200 tasks of 20 ms
    (w,) = start_workers(1, "--concurrency", "4")
    handles = [app.tasks["work"].send(i, sleep_ms=20) for i in range(200)]
    app.flush()
    _wait_until(lambda: any(h.ready() for h in handles), 30, "first result")
    # When it gets SIGTERM
    assert w.terminate(timeout=40) == 0
    # Then it exited cleanly after finishing what it had started, and a new worker runs the
    # rest without repeating anything: every result exactly once
    start_workers(1, "--concurrency", "4")
    assert [h.get(timeout=60) for h in handles] == list(range(200))
    records = consume_all(
        kafka_bootstrap, results_topic(ns), expect=_distinct_keys(200), timeout=30
    )
    per_id = Counter(m.key() for m in records)
    assert len(per_id) == 200
    assert sum(per_id.values()) == 200, "a graceful stop must not cause duplicates"
