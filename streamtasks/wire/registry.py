"""A Confluent-compatible Schema Registry as the codec's source of schema ids.

The registry protocol (REST, auth, retries) is ``confluent_kafka.schema_registry``'s
``SchemaRegistryClient`` (``pip install 'streamtasks[registry]'``); the codec writes the
5-byte header itself, so encoding and decoding cost no more than the single-object format.

Subject naming: **RecordNameStrategy** — the subject of a schema is its Avro full name
(``streamtasks.TaskEnvelope``, ``streamtasks.tasks.shop_charge_args``...), whatever topic it is
on. Task arguments and results travel nested inside envelopes and result records, and one
topic carries several record types, so a topic-based subject would not name them. These are
the file names ``streamtasks schemas export`` writes, minus ``.avsc``.

Configuration: ``App(schema_registry_url=..., schema_registry_config={...})`` or
``STREAMTASKS_SCHEMA_REGISTRY_URL``; every other ``STREAMTASKS_SCHEMA_REGISTRY_<NAME>``
variable is passed to the client with ``_`` read as ``.`` (``..._BASIC_AUTH_USER_INFO=user:pw``
sets ``basic.auth.user.info``), as are the keys of ``schema_registry_config`` (``ssl.ca.location``,
``bearer.auth.*``...). ``mock://name`` gives the client's in-process registry (tests).

Invariants: one HTTP request per schema registered or id looked up per process (the codec
caches both ways; the client caches too); errors are translated at this boundary.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from streamtasks.errors import ConfigError, SchemaError
from streamtasks.wire.schema.compat import Subject

__all__ = ["ENV_PREFIX", "SchemaRegistry", "registered_versions", "registry_config"]

ENV_PREFIX = "STREAMTASKS_SCHEMA_REGISTRY_"


def registry_config(
    url: str | None,
    config: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any] | None:
    """The client configuration, or None when no registry is configured."""
    env = os.environ if environ is None else environ
    conf: dict[str, Any] = {
        key[len(ENV_PREFIX) :].lower().replace("_", "."): value
        for key, value in env.items()
        if key.startswith(ENV_PREFIX) and value != ""
    }
    conf.update({str(k): v for k, v in (config or {}).items()})
    if url:
        conf["url"] = url
    if not conf.get("url"):
        if conf:
            raise ConfigError(
                f"schema registry settings {sorted(conf)} given without a URL: set "
                "App(schema_registry_url=...) or STREAMTASKS_SCHEMA_REGISTRY_URL"
            )
        return None
    return conf


class SchemaRegistry:
    """Registers schemas and looks up ids through ``SchemaRegistryClient``, cached."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        try:
            from confluent_kafka.schema_registry import SchemaRegistryClient
        except ImportError as exc:
            raise ConfigError(
                "a schema registry is configured but its client is not installed: "
                f"pip install 'streamtasks[registry]' ({exc})"
            ) from exc
        try:
            self.client: Any = SchemaRegistryClient.new_client(dict(config))
        except Exception as exc:  # the client raises ValueError / TypeError for bad settings
            raise ConfigError(f"schema registry settings: {exc}") from exc
        self.url = str(config["url"])
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, Any] = {}
        self._lock = threading.Lock()

    def id_for(self, subject: str, schema: Any) -> int:
        text = json.dumps(schema, separators=(",", ":"))
        key = (subject, text)
        known = self._ids.get(key)
        if known is not None:
            return known
        from confluent_kafka.schema_registry import Schema

        with self._lock:
            try:
                schema_id = int(self.client.register_schema(subject, Schema(text, "AVRO")))
            except Exception as exc:
                raise SchemaError(
                    f"schema registry {self.url}: cannot register subject {subject}: {exc}"
                ) from exc
            self._ids[key] = schema_id
            self._schemas.setdefault(schema_id, schema)
        return schema_id

    def schema_for(self, schema_id: int) -> Any:
        known = self._schemas.get(schema_id)
        if known is not None:
            return known
        with self._lock:
            try:
                found = self.client.get_schema(schema_id)
            except Exception as exc:
                raise SchemaError(
                    f"schema registry {self.url}: cannot look up schema id {schema_id}: {exc}"
                ) from exc
            schema = json.loads(found.schema_str)
            self._schemas[schema_id] = schema
        return schema

    def versions(self, subject: str) -> list[Any]:
        """Every registered version of ``subject``, oldest first ([] if none)."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            numbers = sorted(self.client.get_versions(subject))
        except SchemaRegistryError as exc:
            if getattr(exc, "http_status_code", None) == 404:
                return []
            raise SchemaError(f"schema registry {self.url}: subject {subject}: {exc}") from exc
        except Exception as exc:
            raise SchemaError(f"schema registry {self.url}: subject {subject}: {exc}") from exc
        out = []
        for number in numbers:
            registered = self.client.get_version(subject, number)
            out.append(json.loads(registered.schema.schema_str))
        return out


def registered_versions(
    registry: SchemaRegistry, current: Sequence[Subject]
) -> list[dict[str, Subject]]:
    """The registered versions of the app's subjects, as ``compat.check`` takes them: version
    *i* of every subject in mapping *i* (oldest first)."""
    by_version: list[dict[str, Subject]] = []
    for subject in current:
        if subject.kind == "shared":
            continue
        for i, schema in enumerate(registry.versions(subject.name)):
            while len(by_version) <= i:
                by_version.append({})
            by_version[i][subject.name] = Subject(subject.name, subject.kind, schema, subject.task)
    return by_version
