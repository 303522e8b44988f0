"""Avro single-object encoding of records, resolved from the schemas this process knows.

Frame layout (Avro specification, "Single-object encoding")::

    0xC3 0x01 | 8-byte CRC-64-AVRO fingerprint of the schema's canonical form (little endian)
              | Avro binary encoding of the record

Invariants: a frame is only ever written with a schema that is registered here, so whatever
this process writes it can also read; decoding never raises anything but :class:`DecodeError`
(or its subclass :class:`UnknownSchemaError`), which keeps the raw bytes for the dead-letter
topic. No pickle, no JSON.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from streamtasks.errors import DecodeError, SchemaError, UnknownSchemaError

__all__ = ["MAGIC", "Codec", "KnownSchema", "load_builtin_schema"]

MAGIC = b"\xc3\x01"
_HEADER_LEN = len(MAGIC) + 8


@dataclass(frozen=True)
class KnownSchema:
    """A parsed schema together with its single-object header."""

    name: str
    parsed: Any
    fingerprint: bytes  # 8 bytes, little endian, as on the wire
    canonical: str

    @property
    def header(self) -> bytes:
        return MAGIC + self.fingerprint


def load_builtin_schema(filename: str) -> dict[str, Any]:
    """Load one of the ``.avsc`` contracts shipped from the top-level ``schemas/`` folder."""
    text = resources.files("streamtasks._schemas").joinpath(filename).read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


class Codec:
    """Encodes and decodes single-object frames for a set of registered schemas."""

    def __init__(self) -> None:
        self._by_fingerprint: dict[bytes, KnownSchema] = {}

    def register(self, schema: Any) -> KnownSchema:
        """Parse and register ``schema`` (idempotent). Returns its :class:`KnownSchema`."""
        try:
            parsed = fastavro.parse_schema(schema)
            canonical = to_parsing_canonical_form(parsed)
        except Exception as exc:  # fastavro raises several unrelated types
            raise SchemaError(f"invalid Avro schema: {exc}") from exc
        fp = bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO"))
        existing = self._by_fingerprint.get(fp)
        if existing is not None:
            return existing
        name = parsed.get("name", str(parsed)) if isinstance(parsed, dict) else str(parsed)
        known = KnownSchema(name=name, parsed=parsed, fingerprint=fp, canonical=canonical)
        self._by_fingerprint[fp] = known
        return known

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
        if expect is not None and schema is not expect:
            raise DecodeError(f"expected a {expect.name} frame, got {schema.name}", raw=bytes(data))
        buf = io.BytesIO(data)
        buf.seek(_HEADER_LEN)
        try:
            record = fastavro.schemaless_reader(buf, schema.parsed, None)
        except Exception as exc:
            raise DecodeError(f"corrupt {schema.name} frame: {exc}", raw=bytes(data)) from exc
        if buf.tell() != len(data):
            raise DecodeError(
                f"corrupt {schema.name} frame: {len(data) - buf.tell()} trailing bytes",
                raw=bytes(data),
            )
        return schema, record
