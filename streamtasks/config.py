"""Application configuration: one frozen object, resolved once, rendered to librdkafka dicts.

Resolution order for every setting: explicit argument, then environment variable, then default.
Environment variables:

- ``STREAMTASKS_BOOTSTRAP_SERVERS``  bootstrap address(es), e.g. ``kafka-1:9092,kafka-2:9092``
- ``STREAMTASKS_NAMESPACE``          topic namespace (default ``streamtasks``)
- ``STREAMTASKS_PARTITIONS``         partitions for topics created by streamtasks (default 6)
- ``STREAMTASKS_REPLICATION_FACTOR`` replication factor for created topics (default: broker's)
- ``STREAMTASKS_RETRY_TIERS``        retry tier delays in seconds, e.g. ``5,30,300,1800``
- ``STREAMTASKS_MAX_PAYLOAD_BYTES``   largest record (value + key + headers; default 1,000,000)
- ``STREAMTASKS_RESULT_TTL``         seconds final results are kept by ``ResultStore.expire``
- ``STREAMTASKS_RETRY_PARTITIONS``   partitions of the retry-tier topics (default: ``PARTITIONS``)
- ``STREAMTASKS_CHORD_PARTITIONS``   partitions of ``{ns}.chords`` (default: ``PARTITIONS``)
- ``STREAMTASKS_RESULT_CAPACITY``    task ids and results a client's listener keeps in memory
  (default 200,000); a handle evicted beyond it is looked up from the results topic
- ``STREAMTASKS_KAFKA_<NAME>``       any librdkafka property, ``_`` read as ``.``:
  ``STREAMTASKS_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` sets ``security.protocol``.

Invariants: a config that was constructed is valid (mistakes raise :class:`ConfigError` with
a message saying how to fix them); user pass-through settings can never switch off the
settings that at-least-once delivery depends on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamtasks.errors import ConfigError
from streamtasks.wire.topics import validate_name

__all__ = ["KafkaValue", "Settings"]

KafkaValue = str | int | float | bool

ENV_PREFIX = "STREAMTASKS_"
_KAFKA_ENV_PREFIX = "STREAMTASKS_KAFKA_"

# Settings the worker relies on for its delivery guarantees; users cannot override them.
_GUARDED_CONSUMER = {
    "enable.auto.offset.store": "streamtasks stores offsets itself, only for finished tasks",
    "group.id": "the group id is derived from the app; pass group_id= to the Worker instead",
}
_GUARDED_PRODUCER = {
    "acks": "results and retries must be acknowledged by all in-sync replicas (acks=all)",
    "enable.idempotence": "the producer must be idempotent so retries cannot reorder/duplicate",
}

#: The default record limit: librdkafka's own default ``message.max.bytes``, which leaves room
#: under Apache Kafka's default broker limit (1,048,588 bytes a batch) for the batch framing.
DEFAULT_MAX_PAYLOAD_BYTES = 1_000_000
#: task ids (pending) and final results a client's result listener keeps in memory, each
DEFAULT_RESULT_CAPACITY = 200_000
#: What librdkafka counts beyond value + key + raw header bytes (header length varints).
_HEADER_FRAMING = 4096

_PRODUCER_DEFAULTS: dict[str, KafkaValue] = {
    "acks": "all",
    "enable.idempotence": True,
    # 5 ms batches a send() loop (at 0 it runs at half the rate, 40 % more CPU a task) and
    # the workers' outputs; a client's send after a quiet spell does not wait it out
    # (kafka/earlysend.py: enqueue->done at 200/s -4 ms, bench/README.md, issue 18 latency).
    "linger.ms": 5,
    # Same key -> same partition as the Java client, so mixed-language producers agree.
    "partitioner": "murmur2_random",
    # A record the broker has not acknowledged within this time fails (the sender is told)
    # instead of waiting librdkafka's 5 minutes; the worker produces its outputs again.
    "message.timeout.ms": 15000,
    # A send before `topics apply` must not create a topic with the broker's defaults
    # (e.g. 1 partition); it fails instead, telling the sender.
    "allow.auto.create.topics": False,
}
_CONSUMER_DEFAULTS: dict[str, KafkaValue] = {
    "enable.auto.commit": True,
    "enable.auto.offset.store": False,
    "auto.commit.interval.ms": 1000,
    "auto.offset.reset": "earliest",
}


def _env(name: str, environ: Mapping[str, str]) -> str | None:
    value = environ.get(ENV_PREFIX + name)
    return value if value not in (None, "") else None


def _int_setting(name: str, value: object, *, minimum: int) -> int:
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {value!r}") from None
    if number < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {number}")
    return number


def _tiers(raw: Sequence[object]) -> tuple[float, ...]:
    try:
        tiers = tuple(float(str(t).strip()) for t in raw)
    except ValueError:
        raise ConfigError(
            f"retry_tiers must be delays in seconds, e.g. (5, 30, 300, 1800); got {list(raw)!r}"
        ) from None
    if not tiers or any(t <= 0 for t in tiers) or list(tiers) != sorted(set(tiers)):
        raise ConfigError(
            f"retry_tiers must be positive, strictly increasing delays in seconds, e.g. "
            f"(5, 30, 300, 1800); got {list(raw)!r}"
        )
    return tiers


def _ttl(value: object) -> float | None:
    if value is None:
        return None
    try:
        ttl = float(str(value))
    except ValueError:
        ttl = -1.0
    if not ttl > 0:
        raise ConfigError(f"result_ttl must be a positive number of seconds, got {value!r}")
    return ttl


def _optional_count(
    name: str, value: int | None, env_name: str, environ: Mapping[str, str]
) -> int | None:
    raw = value if value is not None else _env(f"{env_name}_PARTITIONS", environ)
    return None if raw is None else _int_setting(name, raw, minimum=1)


def kafka_env(environ: Mapping[str, str]) -> dict[str, KafkaValue]:
    """librdkafka properties from ``STREAMTASKS_KAFKA_*`` variables."""
    out: dict[str, KafkaValue] = {}
    for key, value in environ.items():
        if key.startswith(_KAFKA_ENV_PREFIX) and len(key) > len(_KAFKA_ENV_PREFIX):
            out[key[len(_KAFKA_ENV_PREFIX) :].lower().replace("_", ".")] = value
    return out


def _check_kafka_dict(where: str, cfg: Mapping[str, object]) -> dict[str, KafkaValue]:
    checked: dict[str, KafkaValue] = {}
    for key, value in cfg.items():
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{where}: property names must be non-empty strings, got {key!r}")
        if not isinstance(value, str | int | float | bool):
            raise ConfigError(
                f"{where}: {key}={value!r} must be a str, int, float or bool "
                "(librdkafka properties are scalars)"
            )
        checked[key] = value
    return checked


def _check_guarded(where: str, cfg: Mapping[str, KafkaValue], guarded: Mapping[str, str]) -> None:
    for key, why in guarded.items():
        if key in cfg:
            raise ConfigError(f"{where}: {key!r} cannot be overridden: {why}. Remove it.")


@dataclass(frozen=True)
class Settings:
    """Resolved, validated settings of an :class:`~streamtasks.App`."""

    name: str
    bootstrap_servers: str | None
    namespace: str = "streamtasks"
    default_queue: str = "default"
    partitions: int = 6
    replication_factor: int = -1
    retry_tiers: tuple[float, ...] = (5.0, 30.0, 300.0, 1800.0)
    max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES
    result_ttl: float | None = None  # seconds; None keeps results forever
    result_capacity: int = DEFAULT_RESULT_CAPACITY
    #: None: as many as ``partitions``
    retry_partitions: int | None = None
    chord_partitions: int | None = None
    kafka_config: dict[str, KafkaValue] = field(default_factory=dict)
    producer_config: dict[str, KafkaValue] = field(default_factory=dict)
    consumer_config: dict[str, KafkaValue] = field(default_factory=dict)
    #: producer settings of one side only, over ``producer_config``: the sending client's
    #: (``App.producer``) and the worker's (results, retries, follow-on tasks)
    client_producer_config: dict[str, KafkaValue] = field(default_factory=dict)
    worker_producer_config: dict[str, KafkaValue] = field(default_factory=dict)

    @property
    def retry_partition_count(self) -> int:
        return self.retry_partitions if self.retry_partitions is not None else self.partitions

    @property
    def chord_partition_count(self) -> int:
        return self.chord_partitions if self.chord_partitions is not None else self.partitions

    @classmethod
    def resolve(
        cls,
        name: str,
        *,
        bootstrap_servers: str | None = None,
        namespace: str | None = None,
        default_queue: str = "default",
        partitions: int | None = None,
        replication_factor: int | None = None,
        retry_tiers: Sequence[float] | None = None,
        max_payload_bytes: int | None = None,
        result_ttl: float | None = None,
        result_capacity: int | None = None,
        retry_partitions: int | None = None,
        chord_partitions: int | None = None,
        kafka_config: Mapping[str, object] | None = None,
        producer_config: Mapping[str, object] | None = None,
        consumer_config: Mapping[str, object] | None = None,
        client_producer_config: Mapping[str, object] | None = None,
        worker_producer_config: Mapping[str, object] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> Settings:
        env = os.environ if environ is None else environ
        problem = validate_name("app name", name)
        ns = namespace or _env("NAMESPACE", env) or "streamtasks"
        problem = problem or validate_name("namespace", ns)
        problem = problem or validate_name("default queue", default_queue)
        if problem:
            raise ConfigError(problem)
        parts_raw = partitions if partitions is not None else _env("PARTITIONS", env) or 6
        rf_raw = (
            replication_factor
            if replication_factor is not None
            else _env("REPLICATION_FACTOR", env) or -1
        )
        rf = _int_setting("replication_factor", rf_raw, minimum=-1)
        if rf == 0:
            raise ConfigError("replication_factor must be -1 (broker default) or >= 1, got 0")
        base = kafka_env(env)
        base.update(_check_kafka_dict("kafka_config", kafka_config or {}))
        if "bootstrap.servers" in base:
            raise ConfigError(
                "kafka_config: set the bootstrap address with bootstrap_servers= or "
                "STREAMTASKS_BOOTSTRAP_SERVERS, not 'bootstrap.servers'"
            )
        producer = _check_kafka_dict("producer_config", producer_config or {})
        consumer = _check_kafka_dict("consumer_config", consumer_config or {})
        _check_guarded("kafka_config", base, {**_GUARDED_CONSUMER, **_GUARDED_PRODUCER})
        _check_guarded("producer_config", producer, _GUARDED_PRODUCER)
        sides = {}
        for side, given in (
            ("client_producer_config", client_producer_config),
            ("worker_producer_config", worker_producer_config),
        ):
            sides[side] = _check_kafka_dict(side, given or {})
            _check_guarded(side, sides[side], _GUARDED_PRODUCER)
        _check_guarded("consumer_config", consumer, _GUARDED_CONSUMER)
        servers = bootstrap_servers or _env("BOOTSTRAP_SERVERS", env)
        if servers is not None:
            servers = servers.strip()
            if not servers or any(not part.strip() for part in servers.split(",")):
                raise ConfigError(
                    f"bootstrap_servers {servers!r} is malformed: use host:port[,host:port...]"
                )
        tiers_raw: Sequence[object] | None = retry_tiers
        if tiers_raw is None:
            env_tiers = _env("RETRY_TIERS", env)
            tiers_raw = env_tiers.split(",") if env_tiers else (5.0, 30.0, 300.0, 1800.0)
        return cls(
            name=name,
            retry_tiers=_tiers(tiers_raw),
            max_payload_bytes=_int_setting(
                "max_payload_bytes",
                max_payload_bytes
                if max_payload_bytes is not None
                else _env("MAX_PAYLOAD_BYTES", env) or DEFAULT_MAX_PAYLOAD_BYTES,
                minimum=1024,
            ),
            result_ttl=_ttl(result_ttl if result_ttl is not None else _env("RESULT_TTL", env)),
            result_capacity=_int_setting(
                "result_capacity",
                result_capacity
                if result_capacity is not None
                else _env("RESULT_CAPACITY", env) or DEFAULT_RESULT_CAPACITY,
                minimum=1,
            ),
            bootstrap_servers=servers,
            namespace=ns,
            default_queue=default_queue,
            partitions=_int_setting("partitions", parts_raw, minimum=1),
            retry_partitions=_optional_count("retry_partitions", retry_partitions, "RETRY", env),
            chord_partitions=_optional_count("chord_partitions", chord_partitions, "CHORD", env),
            client_producer_config=sides["client_producer_config"],
            worker_producer_config=sides["worker_producer_config"],
            replication_factor=rf,
            kafka_config=base,
            producer_config=producer,
            consumer_config=consumer,
        )

    def require_bootstrap(self) -> str:
        if not self.bootstrap_servers:
            raise ConfigError(
                "no Kafka bootstrap servers configured: pass App(..., bootstrap_servers="
                "'host:9092') or set STREAMTASKS_BOOTSTRAP_SERVERS. For a local development "
                "broker run `streamtasks broker` and use the address it prints."
            )
        return self.bootstrap_servers

    def _common(self) -> dict[str, Any]:
        # Idle connections closed by the broker are normal; librdkafka would log each one.
        return {
            "log.connection.close": False,
            # A dead address fails in seconds, not librdkafka's 30 s per attempt.
            "socket.connection.setup.timeout.ms": 10000,
            "bootstrap.servers": self.require_bootstrap(),
            **self.kafka_config,
        }

    def producer(self, **overrides: KafkaValue) -> dict[str, Any]:
        """librdkafka config for a producer (defaults < kafka_config < producer_config)."""
        return self._producer({}, overrides)

    def client_producer(self) -> dict[str, Any]:
        """The sending client's producer: :meth:`producer` < ``client_producer_config``."""
        return self._producer(self.client_producer_config, {})

    def worker_producer(self, **overrides: KafkaValue) -> dict[str, Any]:
        """A worker's output producer: :meth:`producer` < ``worker_producer_config``."""
        return self._producer(self.worker_producer_config, overrides)

    def _producer(
        self, side: Mapping[str, KafkaValue], overrides: Mapping[str, KafkaValue]
    ) -> dict[str, Any]:
        # the client's limit follows ours, so a record our check lets through is one the
        # client takes (a lower message.max.bytes of the user's wins, and is theirs to keep)
        limit: dict[str, KafkaValue] = {
            "message.max.bytes": max(1_000_000, self.max_payload_bytes + _HEADER_FRAMING)
        }
        cfg = {
            **_PRODUCER_DEFAULTS,
            **limit,
            **self._common(),
            **self.producer_config,
            **side,
            **overrides,
        }
        cfg.setdefault("client.id", f"{self.name}-producer")
        return _drop_consumer_only(cfg)

    def consumer(self, group_id: str | None, **overrides: KafkaValue) -> dict[str, Any]:
        """librdkafka config for a consumer; ``group_id=None`` for an assign()-only reader."""
        cfg = {**_CONSUMER_DEFAULTS, **self._common(), **self.consumer_config, **overrides}
        if group_id is None:
            # librdkafka insists on a group.id even for assign(); it is never joined or
            # committed to because auto commit is off.
            cfg["group.id"] = f"{self.name}.reader"
            cfg["enable.auto.commit"] = False
        else:
            cfg["group.id"] = group_id
        cfg.setdefault("client.id", f"{self.name}-consumer")
        return _drop_producer_only(cfg)

    def admin(self) -> dict[str, Any]:
        cfg = _drop_producer_only(_drop_consumer_only(self._common()))
        return cfg

    def worker_group(self) -> str:
        return f"{self.namespace}.{self.name}.workers"


# Pass-through settings apply to every client; drop the ones a client type would reject so
# one kafka_config can carry both (librdkafka warns, or fails, on the other kind's keys).
_PRODUCER_ONLY = {
    "acks",
    "enable.idempotence",
    "linger.ms",
    "queue.buffering.max.ms",
    "partitioner",
    "compression.type",
    "compression.codec",
    "batch.size",
    "batch.num.messages",
    "message.timeout.ms",
    "delivery.timeout.ms",
    "retries",
    "queue.buffering.max.messages",
    "queue.buffering.max.kbytes",
    "request.timeout.ms",
    "transactional.id",
}
_CONSUMER_ONLY = {
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.commit.interval.ms",
    "auto.offset.reset",
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "fetch.wait.max.ms",
    "fetch.min.bytes",
    "fetch.max.bytes",
    "max.partition.fetch.bytes",
    "partition.assignment.strategy",
    "group.instance.id",
    "isolation.level",
    "queued.min.messages",
    "queued.max.messages.kbytes",
    "group.id",
    "group.protocol",
}


def _drop_consumer_only(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _CONSUMER_ONLY}


def _drop_producer_only(cfg: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cfg.items() if k not in _PRODUCER_ONLY}
