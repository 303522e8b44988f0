"""Avro frames of records, resolved from the schemas this process knows (or its registry).

Two frame layouts; :meth:`Codec.decode` accepts both, whichever this process writes, so a
migration can run with mixed producers::

    single-object (Avro specification, "Single-object encoding"), written by default:
    0xC3 0x01 | 8-byte CRC-64-AVRO fingerprint of the schema's canonical form (little endian)
              | Avro binary encoding of the record

    Confluent Schema Registry wire format, written when a registry is configured:
    0x00 | 4-byte schema id (big endian) | Avro binary encoding of the record

With a registry (:meth:`Codec.use_registry`) a schema is registered on its first encode and its
id cached; an id read is looked up once and cached; no message costs an HTTP request after
that. An id whose schema is an older version of a current one resolves into the current one.

Schema evolution: an older version of a schema can be registered as a *reader alias* of the
current one (:meth:`Codec.register_old`); its frames decode with Avro schema resolution into
the current shape, and ``decode(expect=current)`` accepts them. Old events queued before an
upgrade therefore still run.

Speed: a schema of plain types is also compiled (:mod:`streamtasks.wire.fastcodec`) and its
frames written and read without fastavro's per-call setup; anything the compiled code does not
take as is goes to fastavro, whose answer stands.

Invariants: a frame is only ever written with a schema that is registered here (never with an
old version), so whatever this process writes it can also read; decoding never raises anything
but :class:`DecodeError` (or its subclass :class:`UnknownSchemaError`), which keeps the raw
bytes for the dead-letter topic. No pickle, no JSON.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any, Protocol

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streamtasks.errors import DecodeError, SchemaError, StreamtasksError, UnknownSchemaError
from streamtasks.wire.fastcodec import FastCodec, compile_schema
from streamtasks.wire.schema import refs
from streamtasks.wire.schema.compat import resolution_problems

__all__ = [
    "CONFLUENT_MAGIC",
    "MAGIC",
    "SHARED_TYPE_FILES",
    "Codec",
    "KnownSchema",
    "SchemaRegistryLike",
    "load_builtin_schema",
]

MAGIC = b"\xc3\x01"
_HEADER_LEN = len(MAGIC) + 8
CONFLUENT_MAGIC = b"\x00"
_CONFLUENT_HEADER_LEN = 5


class SchemaRegistryLike(Protocol):
    """What the codec needs of a schema registry (see :mod:`streamtasks.wire.registry`)."""

    def id_for(self, subject: str, schema: Any) -> int:
        """Register ``schema`` under ``subject`` (idempotent); its id."""

    def schema_for(self, schema_id: int) -> Any:
        """The schema with this id."""


@dataclass(frozen=True)
class KnownSchema:
    """A parsed schema together with its single-object header."""

    name: str
    parsed: Any
    fingerprint: bytes  # 8 bytes, little endian, as on the wire
    canonical: str
    #: for an older version kept for reading: the current schema its frames resolve into
    reads_as: KnownSchema | None = None
    #: the schema as given (with defaults and docs), what a registry is sent
    source: Any = dataclasses.field(default=None, compare=False, repr=False)

    @functools.cached_property
    def header(self) -> bytes:
        """``MAGIC`` + fingerprint (made once: read for every frame written)."""
        return MAGIC + self.fingerprint

    @functools.cached_property
    def fast(self) -> FastCodec | None:
        """Its compiled writer and reader (None: fastavro does all; see wire/fastcodec.py),
        made on first use (~1-4 ms a schema: an old version kept for reading never is)."""
        return compile_schema(self.parsed)


#: named types shared by several of the shipped contracts, each defined once in its own file
SHARED_TYPE_FILES: dict[str, str] = {"streamtasks.TaskError": "task_error.avsc"}


def load_builtin_schema(filename: str, *, expand: bool = True) -> dict[str, Any]:
    """Load one of the ``.avsc`` contracts shipped from the top-level ``schemas/`` folder.

    The files refer to shared named types (:data:`SHARED_TYPE_FILES`) by full name; with
    ``expand`` (the default) each is defined in full at its first use, which gives the same
    schema, canonical form and fingerprint as when the files defined them inline.
    """
    text = resources.files("streamtasks._schemas").joinpath(filename).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    if not expand:
        return schema
    shared = {
        name: load_builtin_schema(file, expand=False)
        for name, file in SHARED_TYPE_FILES.items()
        if file != filename
    }
    expanded: dict[str, Any] = refs.expand(schema, shared)
    return expanded


class Codec:
    """Encodes and decodes frames for a set of registered schemas."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[bytes, KnownSchema] = {}
        self._current_by_name: dict[str, KnownSchema] = {}
        self._registry: SchemaRegistryLike | None = None
        self._headers: dict[bytes, bytes] = {}  # fingerprint -> Confluent header (registry ids)
        self._by_id: dict[int, KnownSchema] = {}

    def use_registry(self, registry: SchemaRegistryLike | None) -> None:
        """Write the Confluent wire format with ids from ``registry`` (None: single-object)."""
        self._registry = registry
        self._headers.clear()
        self._by_id.clear()

    @property
    def registry(self) -> SchemaRegistryLike | None:
        return self._registry

    def register(self, schema: Any) -> KnownSchema:
        """Parse and register ``schema`` (idempotent). Returns its :class:`KnownSchema`."""
        known = self._by_fingerprint.setdefault((parsed := _parse(schema)).fingerprint, parsed)
        if known.reads_as is None:
            self._current_by_name.setdefault(known.name, known)
        return known

    def register_old(self, schema: Any, current: KnownSchema) -> KnownSchema:
        """Register an older version of ``current`` for reading only.

        Raises :class:`SchemaError` if frames of ``schema`` cannot be resolved into
        ``current`` (a field added without a default, a changed type...).
        """
        known = _parse(schema)
        if known.fingerprint == current.fingerprint:
            return current
        _check_resolvable(known, current)
        old = dataclasses.replace(known, reads_as=current)
        return self._by_fingerprint.setdefault(old.fingerprint, old)

    def known(self, fp: bytes) -> KnownSchema | None:
        return self._by_fingerprint.get(fp)

    def header_for(self, schema: KnownSchema) -> bytes:
        """The frame header this codec writes for ``schema``."""
        if self._registry is None:
            return schema.header
        header = self._headers.get(schema.fingerprint)
        if header is None:
            schema_id = self._registry.id_for(schema.name, schema.source)
            header = CONFLUENT_MAGIC + schema_id.to_bytes(4, "big")
            self._headers[schema.fingerprint] = header
            self._by_id.setdefault(schema_id, schema)
        return header

    def encode(self, schema: KnownSchema, record: Any) -> bytes:
        """Encode ``record`` with ``schema``. Raises :class:`SchemaError` if it does not fit."""
        header = schema.header if self._registry is None else self.header_for(schema)
        fast = schema.fast
        if fast is not None:
            out = bytearray(header)
            try:
                fast.write(out, record)
            except Exception:  # not exactly the schema's types: fastavro decides
                pass
            else:
                return bytes(out)
        buf = io.BytesIO()
        buf.write(header)
        try:
            fastavro.schemaless_writer(buf, schema.parsed, record)
        except Exception as exc:
            raise SchemaError(f"record does not fit schema {schema.name}: {exc}") from exc
        return buf.getvalue()

    def decode(
        self, data: bytes | None, expect: KnownSchema | None = None
    ) -> tuple[KnownSchema, Any]:
        """Decode a frame; with ``expect``, a frame of another schema is a DecodeError."""
        if data is None:
            raise DecodeError("empty message (no value)", raw=None)
        if len(data) >= _HEADER_LEN and data[:2] == MAGIC:
            fp = bytes(data[2:_HEADER_LEN])
            schema = self._by_fingerprint.get(fp)
            if schema is None:
                raise UnknownSchemaError(
                    f"unknown schema fingerprint {fp.hex()}: the writer used a schema this "
                    "process does not know (a task this worker does not have, or a newer "
                    "signature)",
                    raw=bytes(data),
                )
            start = _HEADER_LEN
        elif len(data) > _CONFLUENT_HEADER_LEN and data[:1] == CONFLUENT_MAGIC:
            schema = self._by_registry_id(int.from_bytes(data[1:5], "big"), data)
            start = _CONFLUENT_HEADER_LEN
        else:
            raise DecodeError(
                "not an Avro single-object frame (missing 0xC3 0x01 marker), nor a Confluent "
                "Schema Registry frame (0x00 + 4-byte schema id)",
                raw=bytes(data),
            )
        reader = schema.reads_as
        if expect is not None and schema is not expect and reader is not expect:
            raise DecodeError(f"expected a {expect.name} frame, got {schema.name}", raw=bytes(data))
        fast = schema.fast
        if fast is not None and reader is None and type(data) is bytes:
            try:
                record, end = fast.read(data, start)
            except Exception:  # not exactly well-formed: fastavro's answer (or error) stands
                pass
            else:
                if end == len(data):
                    return schema, record
        buf = io.BytesIO(data)
        buf.seek(start)
        try:
            record = fastavro.schemaless_reader(
                buf, schema.parsed, reader.parsed if reader is not None else None
            )
        except Exception as exc:
            raise DecodeError(f"corrupt {schema.name} frame: {exc}", raw=bytes(data)) from exc
        if buf.tell() != len(data):
            raise DecodeError(
                f"corrupt {schema.name} frame: {len(data) - buf.tell()} trailing bytes",
                raw=bytes(data),
            )
        return (reader or schema), record

    def _by_registry_id(self, schema_id: int, data: bytes) -> KnownSchema:
        known = self._by_id.get(schema_id)
        if known is not None:
            return known
        if self._registry is None:
            raise DecodeError(
                "not an Avro single-object frame (missing 0xC3 0x01 marker); it starts like a "
                f"Confluent Schema Registry frame (schema id {schema_id}), but no registry is "
                "configured: set App(schema_registry_url=...) or STREAMTASKS_SCHEMA_REGISTRY_URL",
                raw=bytes(data),
            )
        try:
            writer = _parse(self._registry.schema_for(schema_id))
        except StreamtasksError as exc:
            raise UnknownSchemaError(f"schema id {schema_id}: {exc}", raw=bytes(data)) from exc
        known = self._by_fingerprint.get(writer.fingerprint)
        if known is None:
            current = self._current_by_name.get(writer.name)
            if current is None:
                raise UnknownSchemaError(
                    f"schema id {schema_id} ({writer.name}) is not a schema this process knows "
                    "(a task this worker does not have?)",
                    raw=bytes(data),
                )
            try:
                _check_resolvable(writer, current)
            except SchemaError as exc:
                raise UnknownSchemaError(str(exc), raw=bytes(data)) from exc
            known = dataclasses.replace(writer, reads_as=current)
        return self._by_id.setdefault(schema_id, known)


def _parse(schema: Any) -> KnownSchema:
    try:
        parsed = fastavro.parse_schema(schema)
        canonical = to_parsing_canonical_form(parsed)
    except Exception as exc:  # fastavro raises several unrelated types
        raise SchemaError(f"invalid Avro schema: {exc}") from exc
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    name = parsed.get("name", str(parsed)) if isinstance(parsed, dict) else str(parsed)
    return KnownSchema(name=name, parsed=parsed, fingerprint=fp, canonical=canonical, source=schema)


def _check_resolvable(writer: KnownSchema, current: KnownSchema) -> None:
    """Raise :class:`SchemaError` unless frames of ``writer`` resolve into ``current`` by Avro's
    schema-resolution rules (a field added without a default, a changed type... do not)."""
    issues = resolution_problems(
        writer.source if writer.source is not None else writer.parsed,
        current.source if current.source is not None else current.parsed,
    )
    broken = [i for i in issues if i.rule != "default-removed"]  # not a resolution failure
    missing = [i.path for i in broken if i.rule == "missing-without-default"]
    if broken and len(missing) == len(broken):
        raise SchemaError(
            f"{current.name}: an older version lacks fields {missing} that have no default"
        )
    if broken:
        what = "; ".join(f"{i.path or 'record'}: {i.rule}" for i in broken)
        raise SchemaError(f"{current.name}: an older version cannot be read as this one ({what})")
