"""Test helpers for code built on streamtasks, and the pytest plugin that provides them.

The package registers this module as a pytest plugin (entry point ``pytest11``), so once
streamtasks is installed its fixtures are available to every test suite without a conftest:

* ``kafka_bootstrap`` (session): ``bootstrap.servers`` of a broker for the whole test session.
  ``$STREAMTASKS_TEST_BOOTSTRAP`` set: that existing Kafka/Redpanda/Tansu is used as is.
  ``$STREAMTASKS_TEST_BROKER=kafka``: a local Apache Kafka (:class:`KafkaBroker`: KRaft, one
  node, jars resolved by Maven on first use; needs Java 17+ and, the first time, Maven).
  ``$STREAMTASKS_TEST_BROKER=testcontainers``: an Apache Kafka container (needs Docker; the tests
  are skipped when there is none). Otherwise (``tansu``, the default): an :class:`EmbeddedBroker`.
* ``broker_kind`` (session): ``"tansu"``, ``"kafka"`` or ``"external"``, so a test that meets a
  known gap of the embedded broker can skip and name the gap (see :func:`skip_if_tansu`).
* ``kafka_broker`` (function): the session's local :class:`KafkaBroker` itself, for tests that
  ``kill()`` it (``kill -9``) and ``start()`` it again on the same data directory and port;
  skipped unless ``$STREAMTASKS_TEST_BROKER=kafka``. A broker a test left down is started again
  after it.

Plain helpers: :func:`unique_name`, :func:`create_topics`, :func:`consume_all`, and the client
settings :data:`TEST_CONSUMER_CONFIG` / :data:`TEST_PRODUCER_CONFIG` that keep group joins and
fetches fast on the embedded broker and are harmless on Kafka.

Invariants: helpers never sleep blindly (they poll until a condition or a deadline), close every
client they create, and read records rather than trusting watermarks (which the embedded broker can
report stale). Each test should use its own topics and group ids (:func:`unique_name`).
"""

from __future__ import annotations

import gc
import os
import re
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import Final, Literal

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    TopicPartition,
)

from streamtasks.dev.broker import EmbeddedBroker
from streamtasks.dev.kafka import KafkaBroker
from streamtasks.dev.processes import WorkerProcess, wait_for_workers
from streamtasks.dev.topics import create_topics
from streamtasks.errors import BrokerError

__all__ = [
    "ENV_TEST_BOOTSTRAP",
    "ENV_TEST_BROKER",
    "TEST_CONSUMER_CONFIG",
    "TEST_PRODUCER_CONFIG",
    "BrokerKind",
    "WorkerProcess",
    "broker_kind",
    "consume_all",
    "create_topics",
    "kafka_bootstrap",
    "kafka_broker",
    "skip_if_tansu",
    "unique_name",
    "wait_for_workers",
]

#: Use this existing broker (``host:port[,host:port...]``) instead of starting one.
ENV_TEST_BOOTSTRAP: Final = "STREAMTASKS_TEST_BOOTSTRAP"
#: Which broker to start when ``$STREAMTASKS_TEST_BOOTSTRAP`` is unset: ``tansu`` (default,
#: the embedded broker), ``kafka`` (a local Apache Kafka, :class:`KafkaBroker`) or
#: ``testcontainers`` (Apache Kafka in Docker).
ENV_TEST_BROKER: Final = "STREAMTASKS_TEST_BROKER"

BrokerKind = Literal["tansu", "kafka", "external"]

#: Consumer-group settings for tests: group joins take about half of ``session.timeout.ms`` on
#: the embedded broker, and an empty fetch is answered only after ``fetch.wait.max.ms``.
#: Merge with ``bootstrap.servers`` and a unique ``group.id``.
TEST_CONSUMER_CONFIG: Final[dict[str, object]] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.wait.max.ms": 10,
    "auto.offset.reset": "earliest",
}

#: Producer settings for tests (small batching delay).
TEST_PRODUCER_CONFIG: Final[dict[str, object]] = {
    "linger.ms": 5,
}

_ILLEGAL_NAME_CHARS: Final = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_TOPIC_NAME: Final = 249


def unique_name(prefix: str = "test") -> str:
    """A fresh topic / group id name: ``{prefix}-{16 hex digits}``, Kafka-legal characters only.

    Characters outside ``[A-Za-z0-9._-]`` in ``prefix`` are replaced by ``-``.
    """
    suffix = uuid.uuid4().hex[:16]
    clean = _ILLEGAL_NAME_CHARS.sub("-", prefix).strip("-") or "test"
    return f"{clean[: _MAX_TOPIC_NAME - len(suffix) - 1]}-{suffix}"


def skip_if_tansu(broker_kind: str, gap: str) -> None:
    """Skip the current test when it runs on the embedded (Tansu) broker, naming the gap.

    Example: ``skip_if_tansu(broker_kind, "aborted transactions are visible to read_committed")``.
    """
    if broker_kind == "tansu":
        pytest.skip(f"embedded Tansu broker gap: {gap}")


# -- reading ----------------------------------------------------------------------------------


def _partitions_of(consumer: Consumer, topic: str, deadline: float) -> list[int]:
    """Partition ids of ``topic``, waiting (until ``deadline``) for it to appear."""
    while True:
        remaining = deadline - time.monotonic()
        try:
            metadata = consumer.list_topics(topic, timeout=max(min(remaining, 2.0), 0.1))
        except KafkaException:
            metadata = None
        if metadata is not None:
            info = metadata.topics.get(topic)
            if info is not None and info.error is None and info.partitions:
                return sorted(info.partitions)
        if remaining <= 0:
            return []
        time.sleep(min(0.05, remaining))


def consume_all(
    bootstrap: str,
    topic: str,
    *,
    expect: int | Callable[[list[Message]], bool],
    timeout: float,
    config: Mapping[str, object] | None = None,
) -> list[Message]:
    """Read ``topic`` from the beginning of every partition until ``expect`` is met.

    ``expect`` is a number of records, or a predicate over the records read so far. Uses an
    ``assign()``-ed consumer (no group membership, nothing committed) and waits for the topic to
    appear if it does not exist yet. Returns every record read (possibly more than ``expect``),
    or what was read when ``timeout`` seconds passed; error events are not returned.
    ``config`` overrides consumer settings (e.g. ``isolation.level``).

    :raises BrokerError: on a fatal client error.
    """
    done: Callable[[list[Message]], bool]
    if isinstance(expect, int):
        count = expect

        def done(got: list[Message]) -> bool:
            return len(got) >= count

    else:
        done = expect
    records: list[Message] = []
    if done(records):
        return records
    deadline = time.monotonic() + timeout
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": unique_name("streamtasks-consume-all"),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "allow.auto.create.topics": False,
            "fetch.wait.max.ms": 10,
            **(config or {}),
        }
    )
    try:
        partitions = _partitions_of(consumer, topic, deadline)
        if not partitions:
            return records
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return records
            batch = consumer.consume(num_messages=1000, timeout=min(remaining, 0.1))
            fresh = False
            for message in batch:
                err = message.error()
                if err is None:
                    records.append(message)
                    fresh = True
                elif err.fatal():
                    raise BrokerError(f"reading {topic!r} failed: {err}")
            if fresh and done(records):
                return records
    finally:
        consumer.close()


# -- fixtures ---------------------------------------------------------------------------------


_Engine = Literal["tansu", "kafka", "testcontainers", "external"]


def _selected_engine() -> _Engine:
    if os.environ.get(ENV_TEST_BOOTSTRAP):
        return "external"
    choice = os.environ.get(ENV_TEST_BROKER, "").strip().lower()
    if choice in ("", "tansu", "embedded"):
        return "tansu"
    if choice == "kafka":
        return "kafka"
    if choice == "testcontainers":
        return "testcontainers"
    raise pytest.UsageError(
        f"{ENV_TEST_BROKER}={choice!r} is not supported; use 'tansu' (the embedded broker, "
        f"default), 'kafka' (a local Apache Kafka) or 'testcontainers', or set "
        f"{ENV_TEST_BOOTSTRAP} to an existing broker"
    )


def _selected_kind() -> BrokerKind:
    engine = _selected_engine()
    return "kafka" if engine == "testcontainers" else engine


def _docker_unavailable_reason() -> str | None:
    """Why Docker cannot be used, or ``None`` when it answers a ping."""
    with warnings.catch_warnings():
        # A failed Docker client leaves an unclosed socket behind; do not let that
        # ResourceWarning escape into the test session (filterwarnings=error).
        warnings.simplefilter("ignore", ResourceWarning)
        reason: str | None = None
        try:
            from testcontainers.core.docker_client import DockerClient  # noqa: PLC0415 (optional)

            docker_client = DockerClient()
            try:
                docker_client.client.ping()
            finally:
                docker_client.client.close()
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
        gc.collect()
    return reason


def _kafka_container() -> Iterator[str]:
    reason = _docker_unavailable_reason()
    if reason is not None:
        pytest.skip(f"{ENV_TEST_BROKER}=testcontainers needs a running Docker engine ({reason})")
    try:
        from testcontainers.community.kafka import KafkaContainer  # noqa: PLC0415 (optional)
    except ImportError:  # testcontainers < 4.14 has no community namespace
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            from testcontainers.kafka import KafkaContainer  # noqa: PLC0415 (optional)
    container = KafkaContainer()
    container.start()
    try:
        yield str(container.get_bootstrap_server())
    finally:
        container.stop()


@pytest.fixture(scope="session")
def broker_kind() -> BrokerKind:
    """The kind of broker ``kafka_bootstrap`` provides: ``tansu``, ``kafka`` or ``external``."""
    return _selected_kind()


@pytest.fixture(scope="session")
def _streamtasks_kafka_broker() -> Iterator[KafkaBroker | None]:
    """The session's local Apache Kafka when ``$STREAMTASKS_TEST_BROKER=kafka``, else ``None``."""
    if _selected_engine() != "kafka":
        yield None
        return
    broker = KafkaBroker()
    try:
        broker.start()
    except BrokerError as exc:
        broker.close()
        raise pytest.UsageError(f"{ENV_TEST_BROKER}=kafka: {exc}") from exc
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="session")
def kafka_bootstrap(
    broker_kind: BrokerKind, _streamtasks_kafka_broker: KafkaBroker | None
) -> Iterator[str]:
    """``bootstrap.servers`` of a broker shared by the whole test session."""
    if broker_kind == "external":
        yield os.environ[ENV_TEST_BOOTSTRAP]
    elif _streamtasks_kafka_broker is not None:
        yield _streamtasks_kafka_broker.bootstrap_servers
    elif broker_kind == "kafka":
        yield from _kafka_container()
    else:
        broker = EmbeddedBroker()
        broker.start()
        try:
            yield broker.bootstrap_servers
        finally:
            # In-memory data is lost either way, and Tansu delays a SIGTERM exit by ~5 s
            # while clients that produced are still connected: do not wait for it.
            broker.stop(timeout=1.0)


@pytest.fixture
def kafka_broker(
    kafka_bootstrap: str, _streamtasks_kafka_broker: KafkaBroker | None
) -> Iterator[KafkaBroker]:
    """The session's local Apache Kafka, to ``kill()`` (``kill -9``) and ``start()`` again.

    Data and ports survive: a restart is a crash and recovery of the same broker. Skipped unless
    ``$STREAMTASKS_TEST_BROKER=kafka``; the broker is running again when the test ends.
    """
    broker = _streamtasks_kafka_broker
    if broker is None:
        pytest.skip(
            f"needs the local Apache Kafka ({ENV_TEST_BROKER}=kafka) to kill and restart: the "
            "embedded Tansu broker keeps its data in memory and loses it on restart"
        )
    try:
        yield broker
    finally:
        if not broker.is_running():
            broker.start()
