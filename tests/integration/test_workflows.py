"""Workflows on a real broker: chains (also across a kill -9) and groups."""

from __future__ import annotations

import time
from collections import Counter

import pytest

from streamtasks import App, ArgumentError, TaskFailedError, TaskStatus, chain, group
from streamtasks.testing import consume_all
from streamtasks.wire.envelope import ResultRecord
from streamtasks.wire.topics import results_topic
from tests.integration.conftest import StartWorkers

pytestmark = pytest.mark.integration


def test_a_chain_feeds_each_result_into_the_next_step(
    app: App, start_workers: StartWorkers
) -> None:
    start_workers(1)
    add = app.tasks["add"]
    res = (add.s(1, 2) | add.s(10) | add.s(100)).apply_async()
    assert res.get(timeout=60) == 113
    assert chain(add.s(0, 1), add.s(1)).apply_async().get(timeout=60) == 2


def test_a_failing_step_stops_the_chain_and_its_error_reaches_get(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    start_workers(1)
    t = app.tasks
    res = chain(t["add"].s(1, 2), t["explode"].s(), t["add"].s(100)).apply_async()
    with pytest.raises(TaskFailedError) as info:
        res.get(timeout=60)
    assert info.value.error_type == "ValueError" and "step got 3" in str(info.value)
    # the step after the failing one never ran: its only result is the chain's failure
    msgs = consume_all(kafka_bootstrap, results_topic(ns), expect=3, timeout=30)
    last = [m for m in msgs if (m.key() or b"").decode() == res.id]
    assert len(last) == 1


def test_chain_arguments_are_checked_when_it_is_built(app: App) -> None:
    t = app.tasks
    with pytest.raises(ArgumentError, match="parameter 'y'"):
        chain(t["add"].s(1, 2), t["add"].s("ten"))


def test_a_chain_survives_a_kill_9_between_steps_and_no_step_completes_twice(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    # Given a chain whose middle step takes 3 s
    (victim,) = start_workers(1)
    t = app.tasks
    res = chain(t["add"].s(1, 2), t["work"].s(3000), t["add"].s(100)).apply_async()
    # When the worker is killed -9 while the middle step runs
    first_step = app.AsyncResult(res.id.rsplit(".", 1)[0] + ".0")
    deadline = time.monotonic() + 30
    while first_step.status is not TaskStatus.SUCCESS and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    victim.kill()
    start_workers(1)
    # Then the chain completes with the right value, and each step completed exactly once
    assert res.get(timeout=60) == 103

    def successes(msgs: list[object]) -> Counter[str]:
        out: Counter[str] = Counter()
        for m in msgs:
            raw = app.codec.decode(m.value(), expect=app.result_schema)[1]  # type: ignore[attr-defined]
            rec = ResultRecord.from_avro(raw)
            if rec.status is TaskStatus.SUCCESS:
                out[rec.task_id] += 1
        return out

    msgs = consume_all(
        kafka_bootstrap, results_topic(ns), expect=lambda ms: len(successes(ms)) >= 3, timeout=30
    )
    assert sorted(successes(msgs).values()) == [1, 1, 1]  # type: ignore[arg-type]


def test_a_group_of_200_returns_every_result(app: App, start_workers: StartWorkers) -> None:
    start_workers(2)
    add = app.tasks["add"]
    results = group(add.s(i, i) for i in range(200)).apply_async()
    assert len(results) == 200
    assert results.get(timeout=60) == [2 * i for i in range(200)]
    assert results.ready()
