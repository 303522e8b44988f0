"""Avro single-object encoding of records, resolved from the schemas this process knows.

Frame layout (Avro specification, "Single-object encoding")::

    0xC3 0x01 | 8-byte CRC-64-AVRO fingerprint of the schema's canonical form (little endian)
              | Avro binary encoding of the record

Schema evolution: an older version of a schema can be registered as a *reader alias* of the
current one (:meth:`Codec.register_old`); its frames decode with Avro schema resolution into
the current shape, and ``decode(expect=current)`` accepts them. Old events queued before an
upgrade therefore still run.

Invariants: a frame is only ever written with a schema that is registered here (never with an
old version), so whatever this process writes it can also read; decoding never raises anything
but :class:`DecodeError` (or its subclass :class:`UnknownSchemaError`), which keeps the raw
bytes for the dead-letter topic. No pickle, no JSON.
"""

from __future__ import annotations

import dataclasses
import io
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streamtasks import _schema_refs
from streamtasks.errors import DecodeError, SchemaError, UnknownSchemaError

__all__ = ["MAGIC", "SHARED_TYPE_FILES", "Codec", "KnownSchema", "load_builtin_schema"]

MAGIC = b"\xc3\x01"
_HEADER_LEN = len(MAGIC) + 8


@dataclass(frozen=True)
class KnownSchema:
    """A parsed schema together with its single-object header."""

    name: str
    parsed: Any
    fingerprint: bytes  # 8 bytes, little endian, as on the wire
    canonical: str
    #: for an older version kept for reading: the current schema its frames resolve into
    reads_as: KnownSchema | None = None

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint


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
    expanded: dict[str, Any] = _schema_refs.expand(schema, shared)
    return expanded


class Codec:
    """Encodes and decodes single-object frames for a set of registered schemas."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[bytes, KnownSchema] = {}

    def register(self, schema: Any) -> KnownSchema:
        """Parse and register ``schema`` (idempotent). Returns its :class:`KnownSchema`."""
        known = _parse(schema)
        return self._by_fingerprint.setdefault(known.fingerprint, known)

    def register_old(self, schema: Any, current: KnownSchema) -> KnownSchema:
        """Register an older version of ``current`` for reading only.

        Raises :class:`SchemaError` if frames of ``schema`` cannot be resolved into
        ``current`` (a field added without a default, a changed type...).
        """
        known = _parse(schema)
        if known.fingerprint == current.fingerprint:
            return current
        _check_resolvable(known.parsed, current)
        old = dataclasses.replace(known, reads_as=current)
        return self._by_fingerprint.setdefault(old.fingerprint, old)

    def known(self, fp: bytes) -> KnownSchema | None:
        return self._by_fingerprint.get(fp)

    @staticmethod
    def encode(schema: KnownSchema, record: Any) -> bytes:
        """Encode ``record`` with ``schema``. Raises :class:`SchemaError` if it does not fit."""
        buf = io.BytesIO()
        buf.write(MAGIC)
        buf.write(schema.fingerprint)
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
        if len(data) < _HEADER_LEN or data[:2] != MAGIC:
            raise DecodeError(
                "not an Avro single-object frame (missing 0xC3 0x01 marker)", raw=bytes(data)
            )
        fp = bytes(data[2:_HEADER_LEN])
        schema = self._by_fingerprint.get(fp)
        if schema is None:
            raise UnknownSchemaError(
                f"unknown schema fingerprint {fp.hex()}: the writer used a schema this process "
                "does not know (a task this worker does not have, or a newer signature)",
                raw=bytes(data),
            )
        reader = schema.reads_as
        if expect is not None and schema is not expect and reader is not expect:
            raise DecodeError(f"expected a {expect.name} frame, got {schema.name}", raw=bytes(data))
        buf = io.BytesIO(data)
        buf.seek(_HEADER_LEN)
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


def _parse(schema: Any) -> KnownSchema:
    try:
        parsed = fastavro.parse_schema(schema)
        canonical = to_parsing_canonical_form(parsed)
    except Exception as exc:  # fastavro raises several unrelated types
        raise SchemaError(f"invalid Avro schema: {exc}") from exc
    fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
    name = parsed.get("name", str(parsed)) if isinstance(parsed, dict) else str(parsed)
    return KnownSchema(name=name, parsed=parsed, fingerprint=fp, canonical=canonical)


def _check_resolvable(writer: Any, current: KnownSchema) -> None:
    """Raise :class:`SchemaError` unless every field of the current record is in ``writer`` or
    has a default (the rule that makes an added field backward compatible)."""
    reader = current.parsed
    if isinstance(writer, dict) and isinstance(reader, dict) and reader.get("type") == "record":
        have = {f["name"] for f in writer.get("fields", ())}
        missing = [
            f["name"] for f in reader["fields"] if f["name"] not in have and "default" not in f
        ]
        if missing:
            raise SchemaError(
                f"{current.name}: an older version lacks fields {missing} that have no default"
            )
