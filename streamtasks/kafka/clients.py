"""The confluent-kafka boundary: client construction and admin calls, errors translated.

Invariants: librdkafka exceptions never escape this module untranslated from client
construction or topic administration; a bad librdkafka property surfaces as a
:class:`ConfigError` naming the property and where to look it up.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from streamtasks.errors import BrokerError, ConfigError
from streamtasks.logs import kafka_logger, reachability_check
from streamtasks.wire.topics import TopicSpec

__all__ = [
    "GroupInfo",
    "MemberInfo",
    "alter_offsets",
    "apply_topics",
    "check_reachable",
    "committed_offsets",
    "describe_group",
    "make_admin",
    "make_consumer",
    "make_producer",
    "partition_mismatches",
    "wait_for_topics",
]

_CONFIG_HELP = (
    "see the librdkafka configuration reference "
    "(https://github.com/confluentinc/librdkafka/blob/master/CONFIGURATION.md)"
)


def _build(kind: str, factory: Callable[[dict[str, Any]], Any], cfg: dict[str, Any]) -> Any:
    # librdkafka's own log lines go through structlog, deduplicated (see streamtasks.logs).
    cfg = {"logger": kafka_logger(), **cfg}
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


#: The configuration each client of :func:`make_admin` was built from, for the private client
#: of :func:`_on_own_client`.
_admin_configs: weakref.WeakKeyDictionary[AdminClient, dict[str, Any]] = weakref.WeakKeyDictionary()
_T = TypeVar("_T")
#: Seconds a coordinator request's future may take beyond its ``request_timeout``: the request
#: then fails with librdkafka's own error (which names the cause), and never is still under
#: way when its client is destroyed.
_GRACE = 1.0


def make_admin(cfg: dict[str, Any]) -> AdminClient:
    given = cfg
    errors: list[KafkaError] = []
    if "error_cb" not in cfg:
        cfg = {**cfg, "error_cb": errors.append}
    admin: AdminClient = _build("admin", AdminClient, cfg)
    _admin_errors[admin] = errors
    _admin_configs[admin] = given
    return admin


def _on_own_client(admin: AdminClient, request: Callable[[AdminClient], _T]) -> _T:
    """Run one group-coordinator request (describe a group, read or set its offsets) on a
    private admin client built like ``admin``, and destroy that client before returning or
    raising.

    librdkafka 2.16 aborts the whole process (``rd_kafka_enq_once_del_source_return:
    Assertion `eonce->refcnt > 0' failed``) when a broker comes back while a client whose
    coordinator request timed out during the outage is still alive. Long-lived admin clients
    (the dashboard's status loop) and the reference cycle a failed future leaves (future,
    exception, traceback, frame) would keep such a client until the outage ends. The private
    one is gone before then, and the exception raised here holds no frame that holds it.
    """
    cfg = _admin_configs.get(admin)
    if cfg is None:  # not built by make_admin: there is nothing to copy it from
        return request(admin)
    own = make_admin(cfg)
    alive = weakref.ref(own)
    failure: Exception
    try:
        return request(own)
    except Exception as exc:
        failure = exc
    finally:
        del own
    chained: BaseException | None = failure
    while chained is not None:  # the tracebacks hold the request's frames, and so the client
        chained.__traceback__ = None
        chained = chained.__cause__ or chained.__context__
    if alive() is not None:  # still held by a cycle of the failed future: collect it now
        gc.collect()
    raise failure


def apply_topics(
    admin: AdminClient,
    specs: Iterable[TopicSpec],
    *,
    replication_factor: int = -1,
    timeout: float = 30.0,
) -> dict[str, str]:
    """Create ``specs`` idempotently. Returns ``{topic: "created" | "exists" |
    "mismatch: N partitions"}``.

    An existing topic is left as it is (partition counts are never changed behind the
    user's back) but one with another partition count is reported as a mismatch; a broker
    refusal raises :class:`BrokerError` naming the topic.
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
    try:
        md = admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise BrokerError(f"could not read the topics' metadata: {exc.args[0].str()}") from exc
    for spec in specs:
        topic = md.topics.get(spec.name)
        has = None if topic is None else len(topic.partitions)
        if outcome.get(spec.name) == "exists" and has is not None and has != spec.partitions:
            outcome[spec.name] = f"mismatch: {has} partitions"
    return outcome


def partition_mismatches(outcome: dict[str, str], specs: Iterable[TopicSpec]) -> list[str]:
    """Fix-it sentences for the topics :func:`apply_topics` found with another shape."""
    wanted = {s.name: s.partitions for s in specs}
    problems = []
    for name, state in sorted(outcome.items()):
        if state.startswith("mismatch"):
            has = state.split(": ", 1)[1]
            problems.append(
                f"topic {name!r} exists with {has}, the app's config says {wanted[name]} "
                "(was it auto-created by the broker, e.g. by a send before `topics apply`?). "
                f"Fix: delete it while it is empty and run `streamtasks topics apply` again, or "
                f"add partitions (kafka-topics --alter --partitions {wanted[name]}; keys then "
                f"map to other partitions), or set partitions={has.split()[0]} in the App"
            )
    return problems


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
    with reachability_check():
        _check_reachable(admin, bootstrap, timeout)


def _check_reachable(admin: AdminClient, bootstrap: str, timeout: float) -> None:
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
        f"the Kafka broker at {bootstrap} could not be reached (no answer within "
        f"{timeout:.0f}s). Check the "
        "address (STREAMTASKS_BOOTSTRAP_SERVERS / --bootstrap-servers) and that the broker "
        "is running; for a local one run `streamtasks broker`."
    ) from cause


# -- consumer groups (for status and offsets reset) --------------------------------------------
@dataclass(frozen=True, slots=True)
class MemberInfo:
    member_id: str
    client_id: str
    host: str
    partitions: list[str]


@dataclass(frozen=True, slots=True)
class GroupInfo:
    group: str
    state: str
    members: list[MemberInfo]


def describe_group(admin: AdminClient, group: str, *, timeout: float = 10.0) -> GroupInfo:
    """The group's state and members (an unknown group: state ``UNKNOWN``, no members)."""
    try:
        desc = _on_own_client(
            admin,
            lambda a: a.describe_consumer_groups([group], request_timeout=timeout)[group].result(
                timeout=timeout + _GRACE
            ),
        )
    except KafkaException as exc:
        err = exc.args[0]
        if err.code() in (KafkaError.COORDINATOR_NOT_AVAILABLE, KafkaError.GROUP_ID_NOT_FOUND):
            return GroupInfo(group, "UNKNOWN", [])
        raise BrokerError(f"cannot describe the consumer group {group!r}: {err.str()}") from exc
    members = [
        MemberInfo(
            m.member_id,
            m.client_id,
            m.host,
            [f"{tp.topic}[{tp.partition}]" for tp in (m.assignment.topic_partitions or [])]
            if m.assignment is not None
            else [],
        )
        for m in desc.members or []
    ]
    state = getattr(desc.state, "name", str(desc.state))
    return GroupInfo(group, state, members)


def committed_offsets(
    admin: AdminClient, group: str, topic: str, partitions: list[int], *, timeout: float = 10.0
) -> dict[int, int | None]:
    """The group's committed offset per partition of ``topic`` (None: never committed)."""
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    try:
        got = _on_own_client(
            admin,
            lambda a: a.list_consumer_group_offsets([request], request_timeout=timeout)[
                group
            ].result(timeout=timeout + _GRACE),
        )
    except KafkaException as exc:
        raise BrokerError(f"cannot read the offsets of {group!r}: {exc.args[0].str()}") from exc
    out: dict[int, int | None] = {p: None for p in partitions}
    for tp in got.topic_partitions or []:
        out[tp.partition] = tp.offset if tp.offset >= 0 else None
    return out


def alter_offsets(
    admin: AdminClient, group: str, topic: str, offsets: dict[int, int], *, timeout: float = 30.0
) -> None:
    """Set the group's committed offsets of ``topic`` (the group must have no members)."""
    parts = [TopicPartition(topic, p, o) for p, o in sorted(offsets.items())]
    try:
        _on_own_client(
            admin,
            lambda a: a.alter_consumer_group_offsets(
                [ConsumerGroupTopicPartitions(group, parts)], request_timeout=timeout
            )[group].result(timeout=timeout + _GRACE),
        )
    except KafkaException as exc:
        raise BrokerError(f"the broker refused the new offsets: {exc.args[0].str()}") from exc
