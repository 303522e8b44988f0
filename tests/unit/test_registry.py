"""Confluent Schema Registry wire format: 0x00 + 4-byte id written by our codec, both framings
read, ids cached (no HTTP per message), settings passed through, old versions resolved.

Runs against the client's in-process ``mock://`` registry, and also against a real
Confluent-compatible one when ``STREAMTASKS_TEST_SCHEMA_REGISTRY`` is set to its URL.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from streamtasks import App
from streamtasks.errors import ConfigError, DecodeError
from streamtasks.schema_export import current_subjects
from streamtasks.wire.codec import CONFLUENT_MAGIC, MAGIC, Codec
from streamtasks.wire.registry import SchemaRegistry, registered_versions, registry_config
from streamtasks.wire.schema.compat import Compat, check
from tests.unit import schema_apps

REAL = os.environ.get("STREAMTASKS_TEST_SCHEMA_REGISTRY")
URLS = ["mock://streamtasks-tests", *([REAL] if REAL else [])]


class Counting:
    """Wraps a SchemaRegistryClient and counts the calls that would be HTTP requests."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.client, name)

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] = self.calls.get(name, 0) + 1
            return target(*args, **kwargs)

        return counted


@pytest.fixture(params=URLS, ids=lambda u: "mock" if u.startswith("mock://") else "real")
def url(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def make_app(url: str) -> tuple[App, Counting]:
    """The v1 shop app with a registry (its tasks re-registered on a fresh App)."""
    app = App("shop", bootstrap_servers="127.0.0.1:9", schema_registry_url=url)
    for task in schema_apps.v1.tasks.values():
        app.task(name=task.name)(task.func)
    registry = app.codec.registry
    assert isinstance(registry, SchemaRegistry)
    counting = Counting(registry.client)
    registry.client = counting
    return app, counting


def test_frames_are_confluent_framed_with_the_registered_id(url: str) -> None:
    # Given an app with a schema registry
    app, counting = make_app(url)
    charge = app.tasks["shop.charge"]
    customer = uuid.uuid4()

    # When a task's arguments are encoded
    frame = charge.encode_args((customer, 100), {})

    # Then the frame is magic byte 0 + the 4-byte big-endian id of the subject's schema
    assert frame[:1] == CONFLUENT_MAGIC
    schema_id = int.from_bytes(frame[1:5], "big")
    latest = counting.client.get_latest_version("streamtasks.tasks.shop_charge_args")
    assert latest.schema_id == schema_id
    # And it decodes back to the arguments
    assert charge.decode_args(frame) == (
        (),
        {"customer": customer, "amount": 100, "currency": "EUR"},
    )


def test_no_registry_request_per_message(url: str) -> None:
    # Given an app with a registry, and a second process (a fresh App) reading its frames
    writer, wcount = make_app(url)
    reader, rcount = make_app(url)
    rcount.client = wcount.client  # the same registry (a mock one lives in its client)
    frames = [writer.tasks["shop.charge"].encode_args((uuid.uuid4(), n), {}) for n in range(200)]

    # When 200 frames are decoded
    for frame in frames:
        reader.tasks["shop.charge"].decode_args(frame)

    # Then the writer registered its schema once, and the reader looked its id up once
    assert wcount.calls.get("register_schema") == 1
    assert rcount.calls.get("get_schema") == 1
    assert "register_schema" not in rcount.calls


def test_readers_accept_both_framings_during_a_migration(url: str) -> None:
    # Given producers of both kinds: one without a registry, one with
    plain = schema_apps.v1.tasks["shop.charge"]
    registry_app, _ = make_app(url)
    migrated = registry_app.tasks["shop.charge"]
    customer = uuid.uuid4()
    single_object = plain.encode_args((customer, 1), {})
    confluent = migrated.encode_args((customer, 2), {})
    assert single_object[:2] == MAGIC
    assert confluent[:1] == CONFLUENT_MAGIC

    # When a registry-configured worker reads both
    # Then both decode
    assert migrated.decode_args(single_object)[1]["amount"] == 1
    assert migrated.decode_args(confluent)[1]["amount"] == 2
    # And a whole envelope nests a Confluent-framed args frame the same way
    envelope = registry_app.codec.encode(
        registry_app.envelope_schema,
        {
            "id": "t1", "task": "shop.charge", "queue": "default", "attempt": 1,
            "created_at": 0, "eta": None, "expires": None, "parent_id": None, "root_id": None,
            "workflow_id": None, "continuation": [], "last_error": None, "args": confluent,
            "link_error": [],
        },
    )  # fmt: skip
    assert envelope[:1] == CONFLUENT_MAGIC
    _, record = registry_app.codec.decode(envelope, expect=registry_app.envelope_schema)
    assert migrated.decode_args(record["args"])[1]["amount"] == 2


def test_an_older_registered_version_resolves_into_the_current_one(url: str) -> None:
    # Given v1's charge frames written through the registry
    old_app, counting = make_app(url)
    customer = uuid.uuid4()
    frame = old_app.tasks["shop.charge"].encode_args((customer, 5), {})

    # When a worker with v2 (charge gained `on` with a default) reads them via the same registry
    new_app = App("shop", bootstrap_servers="127.0.0.1:9", schema_registry_url=url)
    new_app.task(name="shop.charge")(schema_apps.v2_ok.tasks["shop.charge"].func)
    registry = new_app.codec.registry
    assert isinstance(registry, SchemaRegistry)
    registry.client = counting.client
    _, kwargs = new_app.tasks["shop.charge"].decode_args(frame)

    # Then the writer schema is fetched by id and resolved: v2's default fills `on`
    assert kwargs["amount"] == 5
    assert str(kwargs["on"]) == "2024-01-01"


def test_a_confluent_frame_without_a_registry_is_a_decode_error_that_says_so() -> None:
    with pytest.raises(DecodeError, match="no registry is configured") as info:
        Codec().decode(b"\x00\x00\x00\x00\x07\x02")
    assert info.value.raw == b"\x00\x00\x00\x00\x07\x02"


def test_settings_and_auth_are_passed_through() -> None:
    # Given a URL from the environment, auth from both the environment and the app
    env = {
        "STREAMTASKS_SCHEMA_REGISTRY_URL": "https://sr.example:8081",
        "STREAMTASKS_SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO": "key:secret",
        "STREAMTASKS_SCHEMA_REGISTRY_BASIC_AUTH_CREDENTIALS_SOURCE": "USER_INFO",
        "STREAMTASKS_NAMESPACE": "not-a-registry-setting",
    }
    conf = registry_config(None, {"ssl.ca.location": "/etc/ca.pem"}, env)

    # Then the client gets them, with _ read as .
    assert conf == {
        "url": "https://sr.example:8081",
        "basic.auth.user.info": "key:secret",
        "basic.auth.credentials.source": "USER_INFO",
        "ssl.ca.location": "/etc/ca.pem",
    }
    # And an explicit URL wins; no URL and no settings means no registry
    assert registry_config("mock://x", None, env)["url"] == "mock://x"  # type: ignore[index]
    assert registry_config(None, None, {}) is None
    # And settings without a URL fail fast
    with pytest.raises(ConfigError, match="without a URL"):
        registry_config(None, {"basic.auth.user.info": "a:b"}, {})


def test_app_reads_the_registry_url_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("STREAMTASKS_SCHEMA_REGISTRY_URL", "mock://from-env")
    app = App("shop", bootstrap_servers="127.0.0.1:9")
    assert isinstance(app.codec.registry, SchemaRegistry)
    assert app.codec.registry.url == "mock://from-env"


def test_check_against_registered_versions(url: str) -> None:
    # Given v1's subjects registered
    registry = SchemaRegistry({"url": url})
    for subject in current_subjects(schema_apps.v1):
        if subject.kind != "shared":
            registry.id_for(subject.name, subject.schema)

    # When v2_ok and v2_broken are checked against the registry's versions
    ok = current_subjects(schema_apps.v2_ok)
    broken = current_subjects(schema_apps.v2_broken)

    # Then only the broken one has problems, the same as against an export
    assert check(ok, registered_versions(registry, ok), Compat.BACKWARD) == []
    problems = check(broken, registered_versions(registry, broken), Compat.BACKWARD)
    assert {p.field for p in problems} == {"amount", "currency", "note", "plan"}


@pytest.fixture(autouse=True)
def _no_leftover_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("STREAMTASKS_SCHEMA_REGISTRY_"):
            monkeypatch.delenv(key)
    yield
