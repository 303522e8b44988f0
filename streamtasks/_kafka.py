"""The confluent-kafka boundary: client construction and admin calls, errors translated.

Invariants: librdkafka exceptions never escape this module untranslated from client
construction or topic administration; a bad librdkafka property surfaces as a
:class:`ConfigError` naming the property and where to look it up.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streamtasks.errors import BrokerError, ConfigError
from streamtasks.topics import TopicSpec

__all__ = [
    "apply_topics",
    "check_reachable",
    "make_admin",
    "make_consumer",
    "make_producer",
    "wait_for_topics",
]

_CONFIG_HELP = (
    "see the librdkafka configuration reference "
    "(https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)"
)


def _build(kind: str, factory: Callable[[dict[str, Any]], Any], cfg: dict[str, Any]) -> Any:
    try:
        return factory(cfg)
    except KafkaException as exc:
        raise ConfigError(
            f"invalid Kafka {kind} configuration: {exc.args[0].str()}; {_CONFIG_HELP}"
        ) from exc
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid Kafka {kind} configuration: {exc}; {_CONFIG_HELP}") from exc


def make_producer(cfg: dict[str, Any]) -> Producer:
    producer: Producer = _build("producer", Producer, cfg)
    return producer


def make_consumer(cfg: dict[str, Any]) -> Consumer:
    consumer: Consumer = _build("consumer", Consumer, cfg)
    return consumer


#: Errors an admin client reported through its ``error_cb`` (read by :func:`check_reachable`).
_admin_errors: weakref.WeakKeyDictionary[AdminClient, list[KafkaError]] = (
    weakref.WeakKeyDictionary()
)
#: Client errors that no retry will fix: wrong certificates, wrong credentials.
_SETUP_ERRORS = frozenset({KafkaError._SSL, KafkaError._AUTHENTICATION})


def make_admin(cfg: dict[str, Any]) -> AdminClient:
    errors: list[KafkaError] = []
    if "error_cb" not in cfg:
        cfg = {**cfg, "error_cb": errors.append}
    admin: AdminClient = _build("admin", AdminClient, cfg)
    _admin_errors[admin] = errors
    return admin


def apply_topics(
    admin: AdminClient,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = -1,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create ``specs`` idempotently. Returns ``{topic: "created" | "exists"}``.

    An existing topic is left as it is (partition counts are never changed behind the
    user's back); a broker refusal raises :class:`BrokerError` naming the topic.
    """
    specs = list(specs)
    if not specs:
        return {}
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=replication_factor,
            config=dict(s.config),
        )
        for s in specs
    ]
    try:
        futures = admin.create_topics(new, request_timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"could not create topics: {exc.args[0].str()}") from exc
    outcome: dict[str, str] = {}
    for name, fut in futures.items():
        try:
            fut.result(timeout=timeout)
            outcome[name] = "created"
        except KafkaException as exc:
            err: KafkaError = exc.args[0]
            if err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
            else:
                raise BrokerError(f"could not create topic {name!r}: {err.str()}") from exc
    wait_for_topics(admin, [s.name for s in specs], timeout=timeout)
    return outcome


def wait_for_topics(admin: AdminClient, names: Iterable[str], *, timeout: float = 30.0) -> None:
    """Block until every topic in ``names`` has metadata with all partitions led."""
    pending = set(names)
    deadline = time.monotonic() + timeout
    while pending:
        try:
            md = admin.list_topics(timeout=max(0.5, min(5.0, deadline - time.monotonic())))
        except KafkaException as exc:
            raise BrokerError(f"broker unreachable while waiting for topics: {exc}") from exc
        for name in list(pending):
            topic = md.topics.get(name)
            if (
                topic is not None
                and topic.error is None
                and topic.partitions
                and all(p.leader >= 0 for p in topic.partitions.values())
            ):
                pending.discard(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            raise BrokerError(f"topics not ready after {timeout:.0f}s: {sorted(pending)}")
        time.sleep(0.05)


def check_reachable(admin: AdminClient, bootstrap: str, *, timeout: float = 10.0) -> None:
    """Fail fast with a fix-it message when no broker answers at ``bootstrap``.

    A TLS or authentication failure (wrong CA, wrong password) fails at once, with the
    client's own reason, instead of waiting ``timeout`` for a broker that will never answer.
    """
    errors = _admin_errors.get(admin, [])
    deadline = time.monotonic() + timeout
    cause: Exception | None = None
    while True:
        remaining = deadline - time.monotonic()
        try:
            md = admin.list_topics(timeout=max(0.1, min(1.0, remaining)))
        except KafkaException as exc:
            md, cause = None, exc
        if md is not None and md.brokers:
            return
        admin.poll(0)  # serves error_cb
        setup = next((e for e in errors if e.code() in _SETUP_ERRORS), None)
        if setup is not None:
            what = "TLS" if setup.code() == KafkaError._SSL else "authentication"
            raise BrokerError(
                f"cannot connect to the Kafka broker at {bootstrap!r}: {what} failed: "
                f"{setup.str()}. Check the security settings (STREAMTASKS_KAFKA_SECURITY_PROTOCOL,"
                " STREAMTASKS_KAFKA_SSL_CA_LOCATION, STREAMTASKS_KAFKA_SASL_*)."
            )
        if remaining <= 0:
            break
    raise BrokerError(
        f"no Kafka broker answered at {bootstrap!r} within {timeout:.0f}s. Check the "
        "address (STREAMTASKS_BOOTSTRAP_SERVERS / --bootstrap-servers) and that the broker "
        "is running; for a local one run `streamtasks broker`."
    ) from cause
