"""Bad input on the task topic: to the DLQ with a reason; the worker stays up; the rest flows."""

from __future__ import annotations

import os
import random
import time
from collections import Counter
from datetime import UTC, datetime

import pytest
from confluent_kafka import KafkaError, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from streamtasks import App
from streamtasks.testing import consume_all
from streamtasks.wire.codec import MAGIC
from streamtasks.wire.envelope import Envelope
from streamtasks.wire.topics import dlq_topic, task_topic
from tests.integration.apps.basic import Item, Shape
from tests.integration.conftest import StartWorkers

pytestmark = pytest.mark.integration


def _raise_max_message_bytes(bootstrap: str, topic: str, limit: int) -> None:
    entry = ConfigEntry(
        "max.message.bytes", str(limit), incremental_operation=AlterConfigOpType.SET
    )
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=15)


def _produce_checked(producer: Producer, topic: str, value: bytes) -> KafkaError | None:
    """The broker's verdict on one record, from its delivery report."""
    reports: list[KafkaError | None] = []
    producer.produce(topic, value=value, key=b"big", on_delivery=lambda e, _m: reports.append(e))
    producer.flush(30)
    assert len(reports) == 1, "no delivery report within 30 s"
    return reports[0]


def _headers(msg: object) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or [])}  # type: ignore[attr-defined]


def test_random_bytes_and_unknown_tasks_go_to_the_dlq_and_valid_tasks_still_complete(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    rng = random.Random(42)
    (worker,) = start_workers(1)
    raw = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    topic = task_topic(ns, "default")
    # Given 200 random byte strings (a quarter of them look like Avro frames of an unknown
    # schema) and 50 well-formed envelopes naming tasks nobody has, written straight to the topic
    for i in range(200):
        body = os.urandom(rng.randint(0, 300))
        if i % 4 == 0:
            body = MAGIC + os.urandom(8) + body
        raw.produce(topic, value=body, key=None if i % 2 else f"k{i}".encode())
    for i in range(50):
        env = Envelope(id=f"unknown-{i}", task=f"nobody.has.task_{i}", queue="default", args=b"")
        raw.produce(
            topic, value=app.codec.encode(app.envelope_schema, env.to_avro()), key=env.id.encode()
        )
    assert raw.flush(10) == 0
    # And valid tasks after them
    handles = [app.tasks["add"].send(i, i) for i in range(100)]
    # Then the valid tasks complete
    assert [h.get(timeout=60) for h in handles] == [2 * i for i in range(100)]
    # And all 250 bad records are in the DLQ, each with a reason, origin and error
    dead = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=250, timeout=30)
    assert len(dead) == 250
    reasons = Counter(_headers(m)["st-dlq-reason"].decode() for m in dead)
    assert reasons["unknown-task"] == 50
    assert reasons["unknown-schema"] + reasons["undecodable"] == 200
    assert reasons["unknown-schema"] >= 50
    for m in dead:
        h = _headers(m)
        assert h["st-origin-topic"].decode() == topic
        assert int(h["st-origin-offset"]) >= 0
        assert h["st-error-message"]
        assert h["st-worker-id"]
    # the original bytes are kept untouched
    sample = next(m for m in dead if _headers(m)["st-dlq-reason"] == b"unknown-task")
    decoded = app.codec.decode(sample.value(), expect=app.envelope_schema)[1]
    assert decoded["task"].startswith("nobody.has.task_")
    # And the worker is still up
    assert worker.is_alive()


def test_arguments_that_do_not_match_the_signature_are_dead_lettered(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    (worker,) = start_workers(1)
    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    # Given an envelope for "add" whose arguments were encoded with another task's schema
    wrong_args = app.tasks["fail"].encode_args(("not numbers",), {})
    env = Envelope(id="bad-args", task="add", queue="default", args=wrong_args)
    raw.produce(
        task_topic(ns, "default"),
        value=app.codec.encode(app.envelope_schema, env.to_avro()),
        key=b"bad-args",
    )
    # And a record with no value at all
    raw.produce(task_topic(ns, "default"), value=None, key=b"tombstone")
    assert raw.flush(10) == 0
    assert app.tasks["add"].send(1, 2).get(timeout=30) == 3
    dead = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=2, timeout=30)
    reasons = sorted(_headers(m)["st-dlq-reason"].decode() for m in dead)
    assert reasons == ["bad-arguments", "undecodable"]
    assert worker.is_alive()


def test_an_oversize_payload_is_dead_lettered_without_being_decoded(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    # Given task and DLQ topics that take records of up to 4 MB (Kafka enforces topic limits)
    for topic in (task_topic(ns, "default"), dlq_topic(ns, "default")):
        _raise_max_message_bytes(kafka_bootstrap, topic, 4_000_000)
    (worker,) = start_workers(1)
    raw = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 4_000_000})
    # (a raised limit reaches the partition's log a moment after the config change)
    deadline = time.monotonic() + 15
    while (
        err := _produce_checked(raw, task_topic(ns, "default"), b"\x00" * 2_000_000)
    ) is not None:
        assert time.monotonic() < deadline, f"the 2 MB record was refused: {err}"
        time.sleep(0.2)
    assert app.tasks["add"].send(1, 1).get(timeout=30) == 2
    (dead,) = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1, timeout=30)
    assert _headers(dead)["st-dlq-reason"] == b"oversize"
    assert len(dead.value()) == 2_000_000
    assert worker.is_alive()


def test_an_oversize_task_is_refused_at_send_time(app: App) -> None:
    from streamtasks import ArgumentError

    with pytest.raises(ArgumentError, match="over max_payload_bytes"):
        app.tasks["summarize"].send(
            Item("x", Shape.CIRCLE, 1.0, ["t" * 1000] * 2000, datetime.now(UTC))
        )
