"""Converting values of one Python type to and from Avro: the adapter base and the scalars.

A :class:`TypeAdapter` holds one Avro type (``schema``) and converts values both ways: what
fastavro writes (:meth:`~TypeAdapter.to_avro`) and what it reads back
(:meth:`~TypeAdapter.from_avro`). This module has the base class, the scalar and logical-type
adapters (str, int, float, bool, bytes, None, datetime, date, UUID), the namespaces and the
:class:`Mismatch` a conversion raises; containers, enums and records are in :mod:`.composites`,
deriving adapters from hints in :mod:`.derive`, a task's signature in :mod:`.signature`.

Invariants:

* No value that does not fit its schema gets past :meth:`TypeAdapter.to_avro`: a mismatch
  raises :class:`ArgumentError` saying where (parameter, list item, dict key or value,
  dataclass field) and what was expected.
* ``from_avro(to_avro(v)) == v`` for every supported type. Logical types (timestamps, dates,
  UUIDs) are converted here, so the result does not depend on fastavro's logical-type
  handling; ``from_avro`` accepts both the raw Avro value and fastavro's converted one.
* Schemas are plain JSON-compatible data, ready for ``fastavro.parse_schema``.
"""

from __future__ import annotations

import re
import uuid
from abc import ABC, abstractmethod
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from streamtasks.errors import ArgumentError

__all__ = [
    "AVRO_NAME",
    "MISSING",
    "SUPPORTED_TYPES",
    "TASKS_NAMESPACE",
    "TYPES_NAMESPACE",
    "BooleanAdapter",
    "BytesAdapter",
    "DateAdapter",
    "DoubleAdapter",
    "LongAdapter",
    "Mismatch",
    "NullAdapter",
    "StringAdapter",
    "TimestampAdapter",
    "TypeAdapter",
    "UuidAdapter",
    "avro_name",
    "expected_value",
    "show_value",
]

TASKS_NAMESPACE = "streamtasks.tasks"
"""Namespace of the per-task argument and result records."""

TYPES_NAMESPACE = "streamtasks.types"
"""Namespace of records and enums derived from user classes (dataclasses, Enums)."""

SUPPORTED_TYPES = (
    "str, int, float, bool, bytes, None, X | None (Optional[X]), list[X], dict[str, X], "
    "Enum subclasses, dataclasses, datetime.datetime, datetime.date, uuid.UUID"
)

_LONG_MIN = -(2**63)
_LONG_MAX = 2**63 - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")


class _Missing:
    """Sentinel type: no default / no annotation."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()


def avro_name(text: str) -> str:
    """``text`` as a valid Avro name: every other character becomes ``_``."""
    name = _NOT_NAME_CHAR.sub("_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


# -- mismatches ---------------------------------------------------------------------------


class Mismatch(Exception):
    """A value does not fit (internal to the schema package; :meth:`TypeAdapter.to_avro` turns it
    into an ArgumentError). Containers add where, innermost first, as it passes."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.location: list[str] = []

    def inside(self, step: str) -> Mismatch:
        self.location.append(step)
        return self

    def describe(self) -> str:
        return ": ".join([*reversed(self.location), self.detail])

    def message(self, path: str) -> str:
        return f"{path}: {self.describe()}"


def show_value(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} ({text})"


def expected_value(what: str, value: object) -> Mismatch:
    return Mismatch(f"expected {what}, got {show_value(value)}")


# -- adapters -----------------------------------------------------------------------------


class TypeAdapter(ABC):
    """Converts values of one Python type to and from their Avro representation.

    ``schema`` is the standalone Avro type. Inside a larger schema use
    :meth:`render_schema` so named types are defined only once.
    """

    schema: Any
    passthrough: bool = False
    """True when :meth:`from_avro` is the identity, so containers may skip calling it."""

    def to_avro(self, value: object, path: str) -> object:
        """Validate ``value`` and convert it to what fastavro writes.

        Raises :class:`ArgumentError` mentioning ``path`` when the value does not fit.
        """
        try:
            return self.convert(value)
        except Mismatch as exc:
            raise ArgumentError(exc.message(path)) from None

    @abstractmethod
    def from_avro(self, value: object) -> object:
        """Convert what fastavro read back to the Python value."""

    @abstractmethod
    def render_schema(self, seen: set[str]) -> Any:
        """The Avro type; named types already in ``seen`` are given by full name only."""

    @abstractmethod
    def convert(self, value: object) -> object:
        """Like :meth:`to_avro`, raising :class:`Mismatch` (cheap on the success path); the
        fast path containers call on their element adapters."""


class _Primitive(TypeAdapter):
    passthrough = True

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def render_schema(self, seen: set[str]) -> Any:
        return self.schema

    def from_avro(self, value: object) -> object:
        return value


class StringAdapter(_Primitive):
    def __init__(self) -> None:
        super().__init__("string")

    def convert(self, value: object) -> object:
        if type(value) is str:
            return value
        if isinstance(value, str):
            return str.__str__(value)  # plain str of a subclass (e.g. StrEnum)
        raise expected_value("str", value)


class LongAdapter(_Primitive):
    def __init__(self) -> None:
        super().__init__("long")

    def convert(self, value: object) -> object:
        if type(value) is int:
            if _LONG_MIN <= value <= _LONG_MAX:
                return value
        elif isinstance(value, int) and not isinstance(value, bool):
            if _LONG_MIN <= value <= _LONG_MAX:
                return int(value)
        else:
            raise expected_value("int", value)
        raise Mismatch(f"int {value} does not fit in 64 bits (Avro long)")


class DoubleAdapter(_Primitive):
    def __init__(self) -> None:
        super().__init__("double")

    def convert(self, value: object) -> object:
        if type(value) is float:
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise Mismatch(f"int {value} is too large for a float") from None
        raise expected_value("float", value)


class BooleanAdapter(_Primitive):
    def __init__(self) -> None:
        super().__init__("boolean")

    def convert(self, value: object) -> object:
        if value is True or value is False:
            return value
        raise expected_value("bool", value)


class BytesAdapter(_Primitive):
    passthrough = False  # an Avro default is read back as its JSON string form

    def __init__(self) -> None:
        super().__init__("bytes")

    def from_avro(self, value: object) -> object:
        if isinstance(value, str):  # a default filled in by schema resolution
            return value.encode("latin-1")
        return value

    def convert(self, value: object) -> object:
        if type(value) is bytes:
            return value
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise expected_value("bytes", value)


class NullAdapter(_Primitive):
    def __init__(self, note: str = "") -> None:
        super().__init__("null")
        self._note = note

    def convert(self, value: object) -> object:
        if value is None:
            return None
        mismatch = expected_value("None", value)
        if self._note:
            mismatch.detail += f" ({self._note})"
        raise mismatch


class TimestampAdapter(TypeAdapter):
    """Aware ``datetime`` <-> microseconds since the epoch (UTC)."""

    def __init__(self) -> None:
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        return {"type": "long", "logicalType": "timestamp-micros"}

    def convert(self, value: object) -> object:
        if not isinstance(value, datetime):
            raise expected_value("datetime", value)
        if value.utcoffset() is None:
            raise Mismatch(
                f"datetime {value.isoformat()} must be timezone-aware "
                "(e.g. datetime.now(timezone.utc))"
            )
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

    def from_avro(self, value: object) -> object:
        if isinstance(value, datetime):  # fastavro converted it already
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return _EPOCH + timedelta(microseconds=cast(int, value))


class DateAdapter(TypeAdapter):
    """``date`` <-> days since the epoch."""

    def __init__(self) -> None:
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        return {"type": "int", "logicalType": "date"}

    def convert(self, value: object) -> object:
        if isinstance(value, datetime):
            raise Mismatch(f"expected date, got {show_value(value)}; pass its .date()")
        if isinstance(value, date):
            return value.toordinal() - _EPOCH_ORDINAL
        raise expected_value("date", value)

    def from_avro(self, value: object) -> object:
        if isinstance(value, date):  # fastavro converted it already
            return value
        return date.fromordinal(cast(int, value) + _EPOCH_ORDINAL)


class UuidAdapter(TypeAdapter):
    def __init__(self) -> None:
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        return {"type": "string", "logicalType": "uuid"}

    def convert(self, value: object) -> object:
        if isinstance(value, uuid.UUID):
            return str(value)
        raise expected_value("uuid.UUID", value)

    def from_avro(self, value: object) -> object:
        if isinstance(value, uuid.UUID):  # fastavro converted it already
            return value
        return uuid.UUID(cast(str, value))
