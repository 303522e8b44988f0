"""Settings: env fallbacks, librdkafka rendering, and fail-fast fix-it messages."""

from __future__ import annotations

import pytest

from streamtasks import App
from streamtasks.config import Settings
from streamtasks.errors import ConfigError


def test_explicit_arguments_win_over_environment_which_wins_over_defaults() -> None:
    env = {
        "STREAMTASKS_BOOTSTRAP_SERVERS": "env:9092",
        "STREAMTASKS_NAMESPACE": "envns",
        "STREAMTASKS_PARTITIONS": "12",
    }
    s = Settings.resolve("app", environ=env)
    assert (s.bootstrap_servers, s.namespace, s.partitions) == ("env:9092", "envns", 12)
    s = Settings.resolve(
        "app", bootstrap_servers="arg:9092", namespace="argns", partitions=3, environ=env
    )
    assert (s.bootstrap_servers, s.namespace, s.partitions) == ("arg:9092", "argns", 3)
    s = Settings.resolve("app", environ={})
    assert (s.bootstrap_servers, s.namespace, s.partitions) == (None, "streamtasks", 6)


def test_security_settings_pass_through_to_every_client() -> None:
    # Given SASL/SSL settings from code and from STREAMTASKS_KAFKA_* variables
    s = Settings.resolve(
        "app",
        bootstrap_servers="b:9093",
        kafka_config={
            "security.protocol": "SASL_SSL",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "u",
        },
        environ={
            "STREAMTASKS_KAFKA_SASL_PASSWORD": "secret",
            "STREAMTASKS_KAFKA_SSL_CA_LOCATION": "/etc/ca.pem",
        },
    )
    # Then producer, consumer and admin configs all carry them
    for cfg in (s.producer(), s.consumer("g"), s.admin()):
        assert cfg["security.protocol"] == "SASL_SSL"
        assert cfg["sasl.mechanism"] == "SCRAM-SHA-512"
        assert cfg["sasl.username"] == "u"
        assert cfg["sasl.password"] == "secret"
        assert cfg["ssl.ca.location"] == "/etc/ca.pem"
        assert cfg["bootstrap.servers"] == "b:9093"


def test_delivery_critical_settings_are_fixed() -> None:
    s = Settings.resolve("app", bootstrap_servers="b:1")
    p, c = s.producer(), s.consumer("g")
    assert p["acks"] == "all" and p["enable.idempotence"] is True
    assert c["enable.auto.offset.store"] is False and c["group.id"] == "g"
    assert "group.id" not in p and "acks" not in c
    reader = s.consumer(None)
    assert reader["enable.auto.commit"] is False


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kafka_config": {"enable.auto.offset.store": True}}, "cannot be overridden"),
        ({"producer_config": {"acks": 1}}, "cannot be overridden"),
        ({"consumer_config": {"group.id": "x"}}, "cannot be overridden"),
        ({"kafka_config": {"bootstrap.servers": "x:1"}}, "STREAMTASKS_BOOTSTRAP_SERVERS"),
        ({"kafka_config": {"linger.ms": [5]}}, "must be a str, int, float or bool"),
        ({"namespace": "bad ns!"}, "not usable in a Kafka topic name"),
        ({"partitions": 0}, "partitions must be >= 1"),
        ({"replication_factor": 0}, "replication_factor must be -1"),
        ({"bootstrap_servers": "a:1,,b:2"}, "malformed"),
    ],
)
def test_config_mistakes_fail_at_construction_with_a_fix_it_message(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        Settings.resolve("app", environ={}, **kwargs)  # type: ignore[arg-type]


def test_a_missing_bootstrap_address_says_how_to_fix_it() -> None:
    s = Settings.resolve("app", environ={})
    with pytest.raises(ConfigError, match=r"STREAMTASKS_BOOTSTRAP_SERVERS.*streamtasks broker"):
        s.producer()


def test_an_unknown_librdkafka_property_fails_when_the_client_is_made() -> None:
    app = App("app", bootstrap_servers="127.0.0.1:1", kafka_config={"no.such.property": 1})

    @app.task
    def t(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match=r"no.such.property.*librdkafka configuration"):
        t.send(1)


def test_a_task_name_registered_twice_is_refused() -> None:
    app = App("app", bootstrap_servers="b:1")

    @app.task(name="same")
    def a(x: int) -> int:
        return x

    with pytest.raises(ConfigError, match="registered twice"):

        @app.task(name="same")
        def b(x: int) -> int:
            return x


def test_wrong_argument_types_are_refused_at_send_time_before_anything_is_produced() -> None:
    from streamtasks import ArgumentError

    app = App("app", bootstrap_servers="127.0.0.1:1")

    @app.task
    def resize(width: int, height: int) -> None:
        pass

    with pytest.raises(ArgumentError, match="parameter 'width': expected int, got str"):
        resize.send("wide", 3)  # type: ignore[arg-type]
    with pytest.raises(ArgumentError, match="missing a required argument"):
        resize.send(1)  # type: ignore[call-arg]
    assert app._producer is None  # nothing was produced (no client was even made)


def test_result_capacity_comes_from_the_argument_or_the_environment_and_must_be_positive() -> None:
    assert Settings.resolve("app", environ={}).result_capacity == 200_000
    env = {"STREAMTASKS_RESULT_CAPACITY": "5000"}
    assert Settings.resolve("app", environ=env).result_capacity == 5000
    assert Settings.resolve("app", result_capacity=7, environ=env).result_capacity == 7
    with pytest.raises(ConfigError, match="result_capacity must be >= 1"):
        Settings.resolve("app", environ={"STREAMTASKS_RESULT_CAPACITY": "0"})


def test_retry_and_chord_topics_may_have_fewer_partitions_than_the_task_topic() -> None:
    app = App("app", bootstrap_servers="b:1", partitions=6, retry_partitions=1, chord_partitions=2)
    specs = {s.name: s.partitions for s in app.topic_specs(["q"])}
    assert specs["streamtasks.tasks.q"] == 6
    assert {specs[f"streamtasks.tasks.q.retry.{n}"] for n in (1, 2, 3, 4)} == {1}
    assert specs["streamtasks.chords"] == 2
    # a worker group of "q" owns 6 + 4 x 1 + 2 partitions in all
    assert app.worker_partitions(["q"]) == 12
    assert App("app", bootstrap_servers="b:1").worker_partitions(["q"]) == 36
    env = {"STREAMTASKS_RETRY_PARTITIONS": "0"}
    with pytest.raises(ConfigError, match="retry_partitions must be >= 1"):
        Settings.resolve("app", environ=env)


def test_client_and_worker_producers_each_take_their_own_settings_over_the_shared_ones() -> None:
    s = Settings.resolve(
        "app",
        bootstrap_servers="b:1",
        producer_config={"linger.ms": 20, "compression.type": "lz4"},
        client_producer_config={"linger.ms": 50},
        worker_producer_config={"linger.ms": 0},
        environ={},
    )
    assert s.client_producer()["linger.ms"] == 50
    assert s.worker_producer(**{"client.id": "w"})["linger.ms"] == 0
    assert s.worker_producer()["compression.type"] == "lz4"
    assert s.producer()["linger.ms"] == 20
    with pytest.raises(ConfigError, match="worker_producer_config: 'acks' cannot be overridden"):
        Settings.resolve("app", worker_producer_config={"acks": 1}, environ={})
