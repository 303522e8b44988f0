"""Retries through retry topics, dead letters, delayed tasks (real broker, real workers).

The test app uses retry tiers of 1 s, 2 s and 5 s so backoffs are observable quickly.
"""

from __future__ import annotations

import os
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Message, Producer

from streamtasks import App, TaskFailedError, TaskStatus
from streamtasks.testing import consume_all
from streamtasks.wire.codec import MAGIC
from streamtasks.wire.envelope import Envelope, ResultRecord
from streamtasks.wire.topics import dlq_topic, results_topic, retry_topic, task_topic
from tests.integration.conftest import StartWorkers

pytestmark = pytest.mark.integration

# A record held in a tier is released when the poll loop sees it due: a tick is at most
# ~100 ms of idle poll plus a fetch round trip. Generous for a loaded 2-core CI machine.
TICK_S = 1.0


def _headers(msg: Message) -> dict[str, bytes]:
    return dict(msg.headers() or [])  # type: ignore[arg-type]


def _results(
    app: App,
    bootstrap: str,
    ns: str,
    done: Callable[[list[ResultRecord]], bool],
    timeout: float = 60,
) -> list[ResultRecord]:
    decoded: list[ResultRecord] = []

    def enough(msgs: list[Message]) -> bool:
        decoded[:] = [
            ResultRecord.from_avro(app.codec.decode(m.value(), expect=app.result_schema)[1])
            for m in msgs
        ]
        return done(decoded)

    consume_all(bootstrap, results_topic(ns), expect=enough, timeout=timeout)
    return decoded


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_failing_twice_then_succeeding_completes_on_attempt_3_after_the_policys_delays(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    # Given a task whose policy is backoff 1 s, factor 2, no jitter, failing on attempts 1, 2
    start_workers(1)
    res = app.tasks["flaky"].send(2)
    # Then it completes on attempt 3
    assert res.get(timeout=60) == 3
    rec = res.record()
    assert rec is not None and rec.status is TaskStatus.SUCCESS and rec.attempts == 3
    # And the delays between attempts match the policy (1 s, then 2 s)
    history = _results(app, kafka_bootstrap, ns, lambda rs: len(rs) >= 3)
    mine = sorted((r for r in history if r.task_id == res.id), key=lambda r: r.attempts)
    assert [(r.status, r.attempts) for r in mine] == [
        (TaskStatus.RETRY, 1),
        (TaskStatus.RETRY, 2),
        (TaskStatus.SUCCESS, 3),
    ]
    assert mine[0].error is not None and mine[0].error.type == "ConnectionError"
    for before, after, expected in [(mine[0], mine[1], 1.0), (mine[1], mine[2], 2.0)]:
        assert before.finished_at is not None and after.started_at is not None
        waited = (after.started_at - before.finished_at) / 1000
        assert expected <= waited + 0.01 <= expected + TICK_S, (expected, waited)


def test_a_permanently_failing_task_is_dead_lettered_after_max_attempts_with_its_story(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    start_workers(1)
    res = app.tasks["doomed"].send("job-7")
    with pytest.raises(TaskFailedError) as info:
        res.get(timeout=60)
    assert info.value.error_type == "RuntimeError"
    assert res.status is TaskStatus.DEAD
    (dead,) = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1, timeout=30)
    h = _headers(dead)
    assert h["st-dlq-reason"] == b"max-attempts"
    assert h["st-attempts"] == b"3"
    assert h["st-error-type"] == b"RuntimeError"
    assert h["st-error-message"] == b"job-7 can never work"
    assert b"raise RuntimeError" in h["st-traceback"]
    assert int(h["st-first-failure"]) < int(h["st-last-failure"])
    assert h["st-origin-topic"].decode() == retry_topic(ns, "default", 1)
    assert h["st-id"].decode() == res.id and h["st-worker-id"]
    # the dead letter holds the consumed envelope untouched (attempt 3)
    env = Envelope.from_avro(app.codec.decode(dead.value(), expect=app.envelope_schema)[1])
    assert (env.id, env.attempt) == (res.id, 3)
    assert env.last_error is not None and env.last_error.message == "job-7 can never work"


def test_reject_goes_straight_to_the_dlq(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    start_workers(1)
    res = app.tasks["rejecting"].send("malformed order")
    with pytest.raises(TaskFailedError):
        res.get(timeout=30)
    (dead,) = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1, timeout=30)
    assert _headers(dead)["st-dlq-reason"] == b"rejected"
    assert _headers(dead)["st-attempts"] == b"1"


@pytest.mark.partitions(1)
def test_a_failing_task_does_not_block_its_partition(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    # Given one partition holding an always-failing task (retry after 3 s) then 200 quick ones
    start_workers(1)
    failing = app.tasks["slow_retry"].send("head")
    quick = [app.tasks["add"].send(i, 1) for i in range(200)]
    # Then all 200 finish before the failing task's second attempt starts
    assert [q.get(timeout=60) for q in quick] == [i + 1 for i in range(200)]
    with pytest.raises(TaskFailedError):
        failing.get(timeout=60)
    last_quick = max(q.record().finished_at for q in quick)  # type: ignore[union-attr,type-var]
    second = failing.record()
    assert second is not None and second.attempts == 2 and second.started_at is not None
    assert last_quick < second.started_at


def test_1000_poison_records_are_dead_lettered_and_valid_tasks_flow(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    rng = random.Random(5)
    (worker,) = start_workers(1)
    raw = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    topic = task_topic(ns, "default")
    wrong_args = app.tasks["doomed"].encode_args(("text",), {})
    handles = []
    kinds: Counter[str] = Counter()
    for i in range(1000):
        kind = ("bytes", "unknown-task", "bad-arguments")[i % 3]
        kinds[kind] += 1
        if kind == "bytes":
            value = os.urandom(rng.randint(0, 200))
            if i % 2:
                value = MAGIC + os.urandom(8) + value
        else:
            name = f"ghost.task{i}" if kind == "unknown-task" else "add"
            env = Envelope(id=f"poison-{i}", task=name, queue="default", args=wrong_args)
            value = app.codec.encode(app.envelope_schema, env.to_avro())
        raw.produce(topic, value=value, key=f"p{i}".encode())
        if i % 10 == 0:  # valid tasks interleaved with the poison
            raw.flush(10)
            handles.append(app.tasks["add"].send(i, 0))
            app.flush()
    assert raw.flush(10) == 0
    assert [h.get(timeout=60) for h in handles] == [i for i in range(1000) if i % 10 == 0]
    dead = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1000, timeout=60)
    assert len(dead) == 1000
    reasons = Counter(_headers(m)["st-dlq-reason"].decode() for m in dead)
    assert reasons["unknown-task"] == kinds["unknown-task"]
    assert reasons["bad-arguments"] == kinds["bad-arguments"]
    assert reasons["undecodable"] + reasons["unknown-schema"] == kinds["bytes"]
    assert worker.is_alive()
    # Poison is never retried: nothing went to a retry tier
    assert not consume_all(kafka_bootstrap, retry_topic(ns, "default", 1), expect=1, timeout=2)


def test_kill_9_while_retries_are_pending_loses_nothing(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    # Given 300 tasks that each fail once (retry after 1 s) and then succeed
    (victim,) = start_workers(1)
    handles = [app.tasks["flaky"].send(1) for _ in range(300)]
    app.flush()
    # When the worker is killed -9 while retries are pending
    retried: set[str] = set()

    def some_retries_pending() -> bool:
        recs = _results(app, kafka_bootstrap, ns, lambda rs: len(rs) >= 100, timeout=30)
        retried.update(r.task_id for r in recs if r.status is TaskStatus.RETRY)
        return len(retried) >= 100

    _wait_until(some_retries_pending, 60, "100 retries scheduled")
    victim.kill()
    assert sum(h.ready() for h in handles) < 300, "all done before the kill: proves nothing"
    start_workers(1)
    # Then every task still ends in SUCCESS on attempt 2 (or later)
    assert all(h.get(timeout=90) >= 2 for h in handles)
    final = _results(
        app,
        kafka_bootstrap,
        ns,
        lambda rs: len({r.task_id for r in rs if r.status.is_final}) >= 300,
    )
    by_id: dict[str, set[TaskStatus]] = defaultdict(set)
    for r in final:
        by_id[r.task_id].add(r.status)
    assert len(by_id) == 300 and all(TaskStatus.SUCCESS in s for s in by_id.values())


def test_countdown_runs_no_earlier_than_asked_and_within_a_tick(
    app: App, start_workers: StartWorkers
) -> None:
    start_workers(1)
    res = app.tasks["add"].apply_async((1, 2), countdown=3)
    assert res.get(timeout=30) == 3
    rec = res.record()
    assert rec is not None and rec.started_at is not None
    waited = (rec.started_at - rec.created_at) / 1000
    assert 3.0 <= waited <= 3.0 + TICK_S, waited


def test_a_delayed_task_that_expires_while_held_is_not_run(
    app: App, start_workers: StartWorkers
) -> None:
    start_workers(1)
    res = app.tasks["add"].apply_async((1, 2), countdown=2, expires=1)
    with pytest.raises(TaskFailedError) as info:
        res.get(timeout=30)
    assert info.value.error_type == "TaskExpired"
    assert res.status is TaskStatus.EXPIRED
