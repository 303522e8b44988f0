"""Guarantees only a real Apache Kafka can prove: compaction, size limits (a broker crash:
``test_broker_crash.py``).

Each test names the Tansu gap it needs closed and is skipped there (see BROKER.md); on
``STREAMTASKS_TEST_BROKER=kafka`` they all run.
"""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from streamtasks import App, AsyncResult, TaskStatus
from streamtasks.ops.store import ResultStore
from streamtasks.testing import BrokerKind, consume_all, create_topics, skip_if_tansu
from streamtasks.wire.topics import dlq_topic, results_topic, task_topic
from tests.integration.apps.basic import build
from tests.integration.conftest import StartWorkers

pytestmark = pytest.mark.integration


def _set_topic_config(bootstrap: str, topic: str, **settings: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    resource = ConfigResource(
        ConfigResource.Type.TOPIC,
        topic,
        incremental_configs=[
            ConfigEntry(name.replace("_", "."), value, incremental_operation=AlterConfigOpType.SET)
            for name, value in settings.items()
        ],
    )
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=15)


def _headers(msg: Message) -> dict[str, bytes]:
    return {k: v for k, v in (msg.headers() or []) if v is not None}


def _produce_checked(producer: Producer, topic: str, value: bytes, key: bytes) -> KafkaError | None:
    """Produce one record and return the broker's verdict from the delivery report."""
    reports: list[KafkaError | None] = []
    producer.produce(topic, value=value, key=key, on_delivery=lambda err, _m: reports.append(err))
    producer.flush(30)
    assert len(reports) == 1, "no delivery report within 30 s"
    return reports[0]


# -- compaction -------------------------------------------------------------------------------


@pytest.mark.partitions(1)
def test_expired_results_are_compacted_away_and_then_unknown(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str, broker_kind: BrokerKind
) -> None:
    skip_if_tansu(broker_kind, "compaction never removes old values of a compacted topic")
    topic = results_topic(ns)
    # Given a results topic whose segments roll after a second (so the cleaner can reach them)
    _set_topic_config(kafka_bootstrap, topic, segment_ms="1000", delete_retention_ms="1000")
    start_workers(1)
    add = app.tasks["add"]
    old = [add.send(i, i) for i in range(20)]
    assert [r.get(timeout=60) for r in old] == [2 * i for i in range(20)]
    old_ids = {r.id.encode() for r in old}
    time.sleep(1.5)  # the results must age past the TTL below
    # When `results expire` tombstones them
    with ResultStore(app, ":memory:") as store:
        assert store.expire(1.0) == 20
    # Then, once the cleaner has run (new results keep rolling segments meanwhile), the results
    # topic holds no record of them at all: values compacted away, tombstones dropped too
    deadline = time.monotonic() + 90
    left: set[bytes] = old_ids
    while time.monotonic() < deadline:
        assert add.send(0, 1).get(timeout=30) == 1
        records = consume_all(kafka_bootstrap, topic, expect=lambda _: False, timeout=1.5)
        left = {k for m in records if (k := m.key()) in old_ids}
        if not left:
            break
    assert not left, f"{len(left)} expired results still in {topic} after 90 s"
    # And a fresh client reports them as unknown
    fresh = build(namespace=ns, bootstrap_servers=kafka_bootstrap)
    try:
        assert fresh.results_listener(history=True).wait_caught_up(30)
        for task_id in old_ids:
            result = AsyncResult(task_id.decode(), app=fresh)
            assert result.record() is None
            assert result.status is TaskStatus.PENDING
    finally:
        fresh.close()


# -- size limits ------------------------------------------------------------------------------


def test_a_record_above_the_topics_max_message_bytes_is_refused_by_the_broker(
    app: App, kafka_bootstrap: str, ns: str, broker_kind: BrokerKind
) -> None:
    skip_if_tansu(broker_kind, "topic max.message.bytes is not enforced")
    topic = f"{ns}.limited"
    create_topics(kafka_bootstrap, [topic], config={"max.message.bytes": "100000"})
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 4_000_000})
    # Given a client that allows 4 MB: a 200 kB record passes the client, the broker refuses it
    err = _produce_checked(producer, topic, os.urandom(200_000), b"big")
    assert err is not None
    assert err.code() == KafkaError.MSG_SIZE_TOO_LARGE
    # and a record under the limit is accepted
    assert _produce_checked(producer, topic, os.urandom(50_000), b"small") is None


def test_an_oversize_dead_letter_the_dlq_topic_refuses_is_kept_without_its_value(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str, broker_kind: BrokerKind
) -> None:
    skip_if_tansu(broker_kind, "topic max.message.bytes is not enforced")
    # Given a task topic that takes 4 MB records, and the DLQ topic at Kafka's default (~1 MB)
    _set_topic_config(kafka_bootstrap, task_topic(ns, "default"), max_message_bytes="4000000")
    start_workers(1)
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 4_000_000})
    # When a 1.5 MB record (over max_payload_bytes, under the worker's client limit) arrives
    # (the raised topic limit reaches the partition's log a moment after the config change)
    deadline = time.monotonic() + 15
    while _produce_checked(producer, task_topic(ns, "default"), b"\x00" * 1_500_000, b"big"):
        assert time.monotonic() < deadline, "the task topic never took the 1.5 MB record"
        time.sleep(0.2)
    # Then the broker refuses the whole dead letter and the worker writes it again without
    # the value, saying so; the rest flows and the worker stays up
    assert app.tasks["add"].send(1, 1).get(timeout=30) == 2
    (dead,) = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1, timeout=30)
    headers = _headers(dead)
    assert headers["st-dlq-reason"] == b"oversize"
    assert dead.value() is None
    assert b"1500000 bytes dropped" in headers["st-value-dropped"]
    assert b"too large" in headers["st-value-dropped"].lower()
    assert dead.key() == b"big"
