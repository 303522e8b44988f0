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
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Final, Literal

import pytest
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin does not re-export it (typing)

from streamtasks.dev.broker import EmbeddedBroker
from streamtasks.dev.kafka import KafkaBroker
from streamtasks.dev.processes import WorkerProcess, wait_for_workers
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


# -- topics -----------------------------------------------------------------------------------


def _error_of(exc: BaseException) -> KafkaError | None:
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def create_topics(
    bootstrap: str,
    topics: Mapping[str, int] | Sequence[str],
    *,
    config: Mapping[str, str] | None = None,
    timeout: float = 15.0,
    replication_factor: int = -1,
) -> None:
    """Create topics (``{name: partitions}``, or names with one partition each) idempotently.

    A topic that already exists with the wanted partition count is fine. Returns once cluster
    metadata shows every topic with all its partitions led by a broker. ``config`` applies to
    every new topic; ``replication_factor=-1`` means the broker's default.

    :raises BrokerError: creation failed, an existing topic has another partition count, or the
        metadata did not show the topics within ``timeout`` seconds.
    """
    if isinstance(topics, str):
        raise TypeError("topics must be a list of names or a {name: partitions} mapping")
    wanted: dict[str, int] = (
        dict(topics) if isinstance(topics, Mapping) else dict.fromkeys(topics, 1)
    )
    if not wanted:
        return
    deadline = time.monotonic() + timeout
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new_topics = [
        NewTopic(
            name,
            num_partitions=partitions,
            replication_factor=replication_factor,
            config=dict(config or {}),
        )
        for name, partitions in wanted.items()
    ]
    existing = _request_topics(admin, new_topics, timeout, deadline)
    _wait_until_led(admin, wanted, existing, timeout, deadline)


def _request_topics(
    admin: AdminClient, new_topics: list[NewTopic], timeout: float, deadline: float
) -> set[str]:
    """Ask for the topics; returns those that already existed."""
    futures = admin.create_topics(new_topics, operation_timeout=timeout, request_timeout=timeout)
    existing: set[str] = set()
    for name, future in futures.items():
        # exception(), not result(): a re-raised exception would keep this frame (and the
        # admin client's connections) alive in a reference cycle.
        try:
            error = future.exception(timeout=max(deadline - time.monotonic(), 0.1))
        except TimeoutError:
            raise BrokerError(f"creating topic {name!r} took longer than {timeout:g}s") from None
        if error is None:
            continue
        kafka_error = _error_of(error)
        if kafka_error is not None and kafka_error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
            existing.add(name)
            continue
        raise BrokerError(f"could not create topic {name!r}: {error}")
    return existing


def _wait_until_led(
    admin: AdminClient,
    wanted: Mapping[str, int],
    existing: set[str],
    timeout: float,
    deadline: float,
) -> None:
    """Until cluster metadata shows every wanted topic with all its partitions led."""
    pending = dict(wanted)
    while True:
        remaining = deadline - time.monotonic()
        try:
            # All topics, not list_topics(name): an admin client asking for one topic by name
            # requests auto-creation, which Tansu (and Kafka's auto.create.topics.enable) honour.
            metadata = admin.list_topics(timeout=max(min(remaining, 2.0), 0.1))
        except KafkaException:
            metadata = None
        if metadata is not None:
            for name, partitions in list(pending.items()):
                if _led(metadata.topics.get(name), name, partitions, name in existing):
                    del pending[name]
        if not pending:
            return
        if remaining <= 0:
            raise BrokerError(
                f"topics not visible in the cluster metadata after {timeout:g}s: "
                + ", ".join(sorted(pending))
            )
        time.sleep(min(0.05, remaining))


def _led(topic: Any, name: str, partitions: int, existed: bool) -> bool:
    """Whether ``topic`` (its metadata, or None) has its ``partitions`` all led; raises when
    it exists with another count (one that existed before, or more than wanted)."""
    if topic is None or topic.error is not None:
        return False
    seen = topic.partitions
    if len(seen) != partitions and (existed or len(seen) > partitions):
        raise BrokerError(f"topic {name!r} exists with {len(seen)} partitions, not {partitions}")
    return len(seen) == partitions and all(p.error is None and p.leader >= 0 for p in seen.values())


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
