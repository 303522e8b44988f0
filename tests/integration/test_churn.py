"""Churn fault test: workers join, leave gracefully (SIGTERM) and die (kill -9) while tasks
wait in retry tiers (a retry after a failure) and on countdowns (delayed sends).

Invariant: every task reaches its final result — lost = 0 — whatever the group does;
duplicates (a task run again after a kill -9 or a revoke) are bounded and reported.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from streamtasks import App, AsyncResult, TaskStatus
from streamtasks.testing import WorkerProcess, consume_all
from streamtasks.wire.envelope import ResultRecord
from streamtasks.wire.topics import results_topic
from tests.integration.conftest import StartWorkers

pytestmark = [pytest.mark.integration, pytest.mark.fault]


def _send_wave(app: App, rng: random.Random, n: int) -> list[tuple[str, AsyncResult]]:
    """``n`` tasks: a third plain, a third failing once (a retry held in tier 1), a third on
    a countdown of 3-20 s (held in the tiers that cover it)."""
    out: list[tuple[str, AsyncResult]] = []
    for i in range(n):
        kind = ("plain", "retry", "countdown")[i % 3]
        if kind == "plain":
            h = app.tasks["work"].send(i, sleep_ms=20)
        elif kind == "retry":
            h = app.tasks["flaky"].send(1)
        else:
            h = app.tasks["work"].apply_async((i,), countdown=rng.uniform(3, 20))
        out.append((kind, h))
    app.flush()
    return out


def test_workers_joining_leaving_and_killed_lose_no_task_held_in_tiers_or_countdowns(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    rng = random.Random(11)
    started = time.monotonic()
    # Given two workers and a first wave of tasks
    workers: list[WorkerProcess] = start_workers(2, "--concurrency", "4")
    handles = _send_wave(app, rng, 150)
    # When workers churn while tasks wait in the tiers and on countdowns: one joins, one
    # leaves with SIGTERM, one is killed -9, two join, one leaves with SIGTERM (so the
    # others get its partitions and keep theirs); a new wave after most changes
    events: list[str] = []
    workers += start_workers(1, "--concurrency", "4")
    events.append("join")
    handles += _send_wave(app, rng, 150)
    assert workers.pop(0).terminate(timeout=45) == 0
    events.append("sigterm")
    handles += _send_wave(app, rng, 150)
    workers.pop(0).kill()
    events.append("kill -9")
    handles += _send_wave(app, rng, 150)
    workers += start_workers(1, "--concurrency", "4")
    events.append("join")
    workers += start_workers(1, "--concurrency", "4")
    events.append("join")
    # the last wave's countdowns (3-20 s) are held in the tiers while the last leave rebalances
    handles += _send_wave(app, rng, 150)
    assert workers.pop(0).terminate(timeout=45) == 0
    events.append("sigterm")
    # Then every task reaches its final result (read from the results topic, so a run that
    # loses tasks still reports how many)
    n = len(handles)
    ids = {h.id for _, h in handles}
    finals: Counter[str] = Counter()

    def all_final(msgs: list[object]) -> bool:
        finals.clear()
        for m in msgs:
            rec = ResultRecord.from_avro(app.codec.decode(m.value(), expect=app.result_schema)[1])  # type: ignore[attr-defined]
            if rec.status is TaskStatus.SUCCESS and rec.task_id in ids:
                finals[rec.task_id] += 1
        return len(finals) >= n

    consume_all(kafka_bootstrap, results_topic(ns), expect=all_final, timeout=120)
    lost = n - len(finals)
    duplicates = sum(c - 1 for c in finals.values())
    print(
        f"\nchurn: tasks={n} events={events} "
        f"lost={lost} duplicates={duplicates} took={time.monotonic() - started:.0f}s"
    )
    assert lost == 0, sorted(ids - set(finals))[:10]
    for kind, h in handles:
        value = h.get(timeout=30)
        if kind == "retry":
            assert value >= 2
    # a duplicate is a task that finished on the killed worker after its last commit: bounded
    # by its in-flight window
    assert duplicates <= 256
    assert all(w.is_alive() for w in workers)
