"""Regression tests for issue 11: nothing hostile stops a partition or a worker.

Each test reproduces one defect found by hostile-input and churn runs: a retry held across a
rebalance, a malformed tier header, an unexpected error on a task thread, dead letters routed
by record content, and records over the size limits.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from structlog.testing import capture_logs

from streamtasks import App, ArgumentError, TaskFailedError
from streamtasks.testing import consume_all
from streamtasks.wire.envelope import Envelope
from streamtasks.wire.topics import dlq_topic, retry_topic, task_topic
from streamtasks.worker import Worker
from streamtasks.worker.flow import PartitionFlow
from tests.integration.conftest import StartWorkers

pytestmark = pytest.mark.integration


def _headers(msg: Message) -> dict[str, bytes]:
    return dict(msg.headers() or [])  # type: ignore[arg-type]


def test_a_retry_held_in_a_tier_runs_after_a_rebalance_gives_its_partition_back(
    app: App, start_workers: StartWorkers
) -> None:
    # Given one worker holding 12 delayed tasks in a retry tier (its tier partitions paused)
    (first,) = start_workers(1)
    countdown = 15.0
    sent = time.monotonic()
    handles = [app.tasks["add"].apply_async((i, i), countdown=countdown) for i in range(12)]
    app.flush()
    # When a second worker joins, so the first one's partitions are revoked and half of them
    # assigned back to it while its holds are pending
    start_workers(1)
    assert time.monotonic() - sent < countdown - 2, "rebalanced after the tasks were due"
    # Then every held task still runs once it is due
    assert [h.get(timeout=countdown + 30) for h in handles] == [2 * i for i in range(12)]
    assert first.is_alive()


def _raw(bootstrap: str) -> Producer:
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})


def _envelope_bytes(app: App, env: Envelope) -> bytes:
    return app.codec.encode(app.envelope_schema, env.to_avro())


def _wait_committed_to_end(app: App, bootstrap: str, topic: str, timeout: float = 30) -> None:
    """The worker group's committed offset of every partition of ``topic`` reaches the end
    (the end is read from the records themselves, not from watermarks)."""
    records = consume_all(bootstrap, topic, expect=lambda _: False, timeout=3)
    ends: dict[int, int] = {}
    for m in records:
        ends[m.partition()] = max(ends.get(m.partition(), 0), m.offset() + 1)  # type: ignore[arg-type, operator]
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": app.settings.worker_group()})
    try:
        deadline = time.monotonic() + timeout
        committed: dict[int, int] = {}
        while time.monotonic() < deadline:
            tps = [TopicPartition(topic, p) for p in ends]
            committed = {tp.partition: tp.offset for tp in reader.committed(tps, timeout=10)}
            if all(committed[p] >= end for p, end in ends.items()):
                return
            time.sleep(0.2)
        raise AssertionError(f"committed {committed} never reached the ends {ends} of {topic}")
    finally:
        reader.close()


def test_a_malformed_not_before_header_dead_letters_the_record_and_the_worker_stays_up(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    (worker,) = start_workers(1)
    # Given a retry-tier record whose st-not-before header is not a number
    env = Envelope(
        id="bad-due", task="add", queue="default", args=app.tasks["add"].encode_args((1, 1), {})
    )
    raw = _raw(kafka_bootstrap)
    tier = retry_topic(ns, "default", 1)
    raw.produce(
        tier,
        value=_envelope_bytes(app, env),
        key=b"bad-due",
        headers=[("st-task", b"add"), ("st-id", b"bad-due"), ("st-not-before", b"soon")],
    )
    assert raw.flush(10) == 0
    # When valid tasks follow
    handles = [app.tasks["add"].send(i, 1) for i in range(10)]
    # Then they complete, the bad record is a dead letter with a reason, the worker is up
    assert [h.get(timeout=30) for h in handles] == [i + 1 for i in range(10)]
    (dead,) = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1, timeout=30)
    assert _headers(dead)["st-dlq-reason"] == b"bad-header"
    assert b"st-not-before" in _headers(dead)["st-error-message"]
    assert _headers(dead)["st-origin-topic"] == tier.encode()
    assert worker.is_alive()
    _wait_committed_to_end(app, kafka_bootstrap, tier)


def test_a_task_id_shaped_like_a_fire_id_with_an_out_of_range_time_runs_and_commits(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    (worker,) = start_workers(1)
    # Given a task sent through the public API under an id of the scheduler's fire-id shape
    # whose time is far out of range
    odd = app.tasks["add"].apply_async((2, 3), task_id="sched.nightly.999999999999999")
    # Then it runs like any task, and the partition's commit reaches the end
    assert odd.get(timeout=30) == 5
    assert [app.tasks["add"].send(i, i).get(timeout=30) for i in range(3)] == [0, 2, 4]
    _wait_committed_to_end(app, kafka_bootstrap, task_topic(ns, "default"))
    assert worker.is_alive()


def test_an_unexpected_error_after_a_task_ran_is_a_dead_letter_and_the_commit_advances(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    (worker,) = start_workers(1)
    # Given a task whose continuation frame carries the chord-join fingerprint and a corrupt
    # body (the join cannot be decoded after the task ran)
    frame = app.chord_join_schema.header + b"\xff\xfe corrupt"
    env = Envelope(
        id="corrupt-join",
        task="add",
        queue="default",
        args=app.tasks["add"].encode_args((1, 2), {}),
        continuation=(frame,),
    )
    raw = _raw(kafka_bootstrap)
    topic = task_topic(ns, "default")
    raw.produce(topic, value=_envelope_bytes(app, env), key=b"corrupt-join")
    assert raw.flush(10) == 0
    # When valid tasks follow
    handles = [app.tasks["add"].send(i, 0) for i in range(10)]
    assert [h.get(timeout=30) for h in handles] == list(range(10))
    # Then the record is a dead letter with reason internal-error and the traceback, its id
    # is DEAD for whoever waits on it, and the partition's commit reaches the end
    (dead,) = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1, timeout=30)
    h = _headers(dead)
    assert h["st-dlq-reason"] == b"internal-error"
    assert b"Traceback" in h["st-traceback"]
    with pytest.raises(TaskFailedError):
        app.AsyncResult("corrupt-join").get(timeout=30)
    _wait_committed_to_end(app, kafka_bootstrap, topic)
    assert worker.is_alive()


def test_dead_letters_and_retries_are_routed_by_the_source_topic_not_the_envelope_queue(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    (worker,) = start_workers(1)
    raw = _raw(kafka_bootstrap)
    topic = task_topic(ns, "default")
    # Given envelopes on the default queue's topic that claim other queues, one of them an
    # illegal topic name: two unknown tasks and one task that fails once, then succeeds
    for i, queue in enumerate(["no-such-queue", "bad queue/name"]):
        env = Envelope(id=f"liar-{i}", task="nobody.has.this", queue=queue, args=b"")
        raw.produce(topic, value=_envelope_bytes(app, env), key=env.id.encode())
    flaky = Envelope(
        id="liar-flaky",
        task="flaky",
        queue="no-such-queue",
        args=app.tasks["flaky"].encode_args((1,), {}),
    )
    raw.produce(topic, value=_envelope_bytes(app, flaky), key=b"liar-flaky")
    assert raw.flush(10) == 0
    # When valid tasks follow
    handles = [app.tasks["add"].send(i, 2) for i in range(20)]
    # Then they all complete, both dead letters are in the default queue's DLQ, the retry
    # ran from the default queue's tier, and no topic was made from the records' content
    assert [h.get(timeout=30) for h in handles] == [i + 2 for i in range(20)]
    assert app.AsyncResult("liar-flaky").get(timeout=30) == 2
    dead = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=2, timeout=30)
    assert sorted(m.key() for m in dead) == [b"liar-0", b"liar-1"]
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert not [t for t in topics if "no-such-queue" in t or "bad queue" in t]
    assert worker.is_alive()


def test_a_result_over_the_size_limit_is_a_failure_that_get_raises(
    app: App, start_workers: StartWorkers
) -> None:
    start_workers(1)
    limit = app.settings.max_payload_bytes
    # Given a task whose result is over twice the payload limit
    handle = app.tasks["blob"].send(2 * limit + 100_000)
    # Then get() raises at once with the limit and the size in the message
    with pytest.raises(TaskFailedError) as info:
        handle.get(timeout=30)
    assert info.value.error_type == "ResultTooLargeError"
    assert str(limit) in info.value.error_message
    size = re.search(r"is (\d+) bytes", info.value.error_message)
    assert size is not None and int(size[1]) > 2 * limit + 100_000
    # And a result under the limit still arrives
    assert app.tasks["blob"].send(100).get(timeout=30) == "x" * 100


def test_send_refuses_what_the_client_or_broker_would_refuse_and_accepts_what_they_take(
    app: App, start_workers: StartWorkers
) -> None:
    start_workers(1)
    # Given messages between librdkafka's default limit (1,000,000) and 1 MiB
    for size in (1_000_001, 1_020_000, 1_048_000):
        # Then send() raises our own error, not a raw KafkaException
        with pytest.raises(ArgumentError, match="over max_payload_bytes"):
            app.tasks["echo_len"].send("t" * size)
    # And a message just under our limit goes through end to end
    size = app.settings.max_payload_bytes - 1000
    assert app.tasks["echo_len"].send("t" * size).get(timeout=60) == size


def test_an_error_in_decision_code_on_the_poll_thread_dead_letters_the_record(
    app: App,
    run_worker: Callable[..., Worker],
    kafka_bootstrap: str,
    ns: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a worker whose hold decision for a delayed record raises (a bug on the poll thread)
    def broken_hold(self: PartitionFlow, tp: object, offset: int, due_ms: int) -> None:
        raise RuntimeError("hold is broken")

    monkeypatch.setattr(PartitionFlow, "hold", broken_hold)
    with capture_logs() as logs:
        worker = run_worker()
        # When a delayed task arrives, and plain tasks after it
        delayed = app.tasks["add"].apply_async((1, 1), countdown=30)
        assert [app.tasks["add"].send(i, i).get(timeout=30) for i in range(5)] == [0, 2, 4, 6, 8]
        # Then the delayed record is a dead letter with reason internal-error, its id DEAD
        with pytest.raises(TaskFailedError):
            delayed.get(timeout=30)
    (dead,) = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1, timeout=30)
    assert _headers(dead)["st-dlq-reason"] == b"internal-error"
    assert b"hold is broken" in _headers(dead)["st-traceback"]
    # And the error was logged with the record's place, and the worker is still running
    (event,) = [e for e in logs if e["event"] == "error deciding on a record on the poll thread"]
    assert event["topic"] == retry_topic(ns, "default", 3) and event["offset"] == 0
    assert not worker._stop.is_set()


def test_a_partition_that_makes_no_progress_for_longer_than_the_bound_is_logged(
    app: App, run_worker: Callable[..., Worker], ns: str
) -> None:
    # Given a worker that warns after 1 s without progress on a partition
    with capture_logs() as logs:
        run_worker(stall_warning=1.0)
        # When one task runs for 3 s
        assert app.tasks["work"].send(7, sleep_ms=3000).get(timeout=30) == 7
    # Then the partition, the offset it waits at and the reason were logged
    stalls = [e for e in logs if e["event"] == "no progress on partition"]
    assert stalls, [e["event"] for e in logs]
    assert stalls[0]["topic"] == task_topic(ns, "default") and stalls[0]["offset"] == 0
    assert "has not finished" in stalls[0]["reason"]
