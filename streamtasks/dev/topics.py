"""Creating test topics and waiting until every partition of them is led (the pytest plugin's
:func:`streamtasks.testing.create_topics`, which re-exports it).

Invariants: creation is idempotent (an existing topic with the wanted partition count is fine,
one with another count is an error); it returns only once cluster metadata shows every partition
led, and it never asks for one topic by name (which would auto-create it on Tansu and on Kafka
with ``auto.create.topics.enable``). Every wait is bounded by the caller's ``timeout``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # confluent_kafka.admin does not re-export it (typing)

from streamtasks.errors import BrokerError

__all__ = ["create_topics"]


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
