"""Avro schemas derived from Python type hints, and value conversion in both directions.

This module has one responsibility: map the annotations of a task function to Avro schemas
(one record for its parameters, one for its return value) and convert Python values to what
fastavro writes, and what fastavro reads back to Python values.

Invariants:

* Schemas are derived once, when a task is declared. A hint that cannot be mapped raises
  :class:`SchemaError` then, naming the parameter and listing what is supported.
* No value that does not fit its schema gets past :meth:`TypeAdapter.to_avro` or
  :meth:`Signature.to_record`: a mismatch raises :class:`ArgumentError` saying where
  (parameter, list item, dict key or value, dataclass field) and what was expected.
* ``from_avro(to_avro(v)) == v`` for every supported type. Logical types (timestamps, dates,
  UUIDs) are converted here, so the result does not depend on fastavro's logical-type
  handling; ``from_avro`` accepts both the raw Avro value and fastavro's converted one.
* A named type (record, enum) is defined in full where it first occurs in a schema and
  referenced by its full name afterwards, as Avro requires.
* Schemas are plain JSON-compatible data, ready for ``fastavro.parse_schema``.

Supported hints: ``str``, ``int`` (Avro long), ``float`` (double), ``bool``, ``bytes``,
``None``, ``X | None``, ``list[X]``, ``dict[str, X]``, ``Enum`` subclasses, dataclasses,
``datetime.datetime`` (aware, timestamp-micros), ``datetime.date`` and ``uuid.UUID``; and,
with the optional pydantic extra, ``pydantic.BaseModel`` subclasses (records like dataclasses;
a dict argument is validated by the model at send time).
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import math
import re
import sys
import types
import typing
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, cast

from streamtasks.errors import ArgumentError, SchemaError

__all__ = [
    "SUPPORTED_TYPES",
    "TASKS_NAMESPACE",
    "TYPES_NAMESPACE",
    "Signature",
    "TypeAdapter",
    "adapter_for",
    "avro_name",
    "return_adapter",
    "signature_of",
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
_AVRO_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NOT_NAME_CHAR = re.compile(r"[^A-Za-z0-9_]")


class _Missing:
    """Sentinel type: no default / no annotation."""

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Any = _Missing()


def avro_name(text: str) -> str:
    """``text`` as a valid Avro name: every other character becomes ``_``."""
    name = _NOT_NAME_CHAR.sub("_", text)
    if not name or name[0].isdigit():
        name = "_" + name
    return name


# -- mismatches ---------------------------------------------------------------------------


class _Mismatch(Exception):
    """Internal: a value does not fit. Containers add where, innermost first, as it passes."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail
        self.location: list[str] = []

    def inside(self, step: str) -> _Mismatch:
        self.location.append(step)
        return self

    def describe(self) -> str:
        return ": ".join([*reversed(self.location), self.detail])

    def message(self, path: str) -> str:
        return f"{path}: {self.describe()}"


def _show(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} ({text})"


def _expected(what: str, value: object) -> _Mismatch:
    return _Mismatch(f"expected {what}, got {_show(value)}")


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
        except _Mismatch as exc:
            raise ArgumentError(exc.message(path)) from None

    @abstractmethod
    def from_avro(self, value: object) -> object:
        """Convert what fastavro read back to the Python value."""

    @abstractmethod
    def render_schema(self, seen: set[str]) -> Any:
        """The Avro type; named types already in ``seen`` are given by full name only."""

    @abstractmethod
    def convert(self, value: object) -> object:
        """Like :meth:`to_avro`, raising :class:`_Mismatch` (cheap on the success path); the
        fast path containers call on their element adapters."""


class _Primitive(TypeAdapter):
    passthrough = True

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def render_schema(self, seen: set[str]) -> Any:
        return self.schema

    def from_avro(self, value: object) -> object:
        return value


class _String(_Primitive):
    def __init__(self) -> None:
        super().__init__("string")

    def convert(self, value: object) -> object:
        if type(value) is str:
            return value
        if isinstance(value, str):
            return str.__str__(value)  # plain str of a subclass (e.g. StrEnum)
        raise _expected("str", value)


class _Long(_Primitive):
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
            raise _expected("int", value)
        raise _Mismatch(f"int {value} does not fit in 64 bits (Avro long)")


class _Double(_Primitive):
    def __init__(self) -> None:
        super().__init__("double")

    def convert(self, value: object) -> object:
        if type(value) is float:
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:
                raise _Mismatch(f"int {value} is too large for a float") from None
        raise _expected("float", value)


class _Boolean(_Primitive):
    def __init__(self) -> None:
        super().__init__("boolean")

    def convert(self, value: object) -> object:
        if value is True or value is False:
            return value
        raise _expected("bool", value)


class _Bytes(_Primitive):
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
        raise _expected("bytes", value)


class _Null(_Primitive):
    def __init__(self, note: str = "") -> None:
        super().__init__("null")
        self._note = note

    def convert(self, value: object) -> object:
        if value is None:
            return None
        mismatch = _expected("None", value)
        if self._note:
            mismatch.detail += f" ({self._note})"
        raise mismatch


class _Timestamp(TypeAdapter):
    """Aware ``datetime`` <-> microseconds since the epoch (UTC)."""

    def __init__(self) -> None:
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        return {"type": "long", "logicalType": "timestamp-micros"}

    def convert(self, value: object) -> object:
        if not isinstance(value, datetime):
            raise _expected("datetime", value)
        if value.utcoffset() is None:
            raise _Mismatch(
                f"datetime {value.isoformat()} must be timezone-aware "
                "(e.g. datetime.now(timezone.utc))"
            )
        delta = value - _EPOCH
        return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds

    def from_avro(self, value: object) -> object:
        if isinstance(value, datetime):  # fastavro converted it already
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return _EPOCH + timedelta(microseconds=cast(int, value))


class _Date(TypeAdapter):
    """``date`` <-> days since the epoch."""

    def __init__(self) -> None:
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        return {"type": "int", "logicalType": "date"}

    def convert(self, value: object) -> object:
        if isinstance(value, datetime):
            raise _Mismatch(f"expected date, got {_show(value)}; pass its .date()")
        if isinstance(value, date):
            return value.toordinal() - _EPOCH_ORDINAL
        raise _expected("date", value)

    def from_avro(self, value: object) -> object:
        if isinstance(value, date):  # fastavro converted it already
            return value
        return date.fromordinal(cast(int, value) + _EPOCH_ORDINAL)


class _Uuid(TypeAdapter):
    def __init__(self) -> None:
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        return {"type": "string", "logicalType": "uuid"}

    def convert(self, value: object) -> object:
        if isinstance(value, uuid.UUID):
            return str(value)
        raise _expected("uuid.UUID", value)

    def from_avro(self, value: object) -> object:
        if isinstance(value, uuid.UUID):  # fastavro converted it already
            return value
        return uuid.UUID(cast(str, value))


class _Optional(TypeAdapter):
    """``X | None``. ``null_first=False`` when a non-None default must match the first branch."""

    def __init__(self, inner: TypeAdapter, *, null_first: bool = True) -> None:
        self.inner = inner
        self.null_first = null_first
        self.passthrough = inner.passthrough
        self._inner_convert = inner.convert
        self._inner_from_avro = inner.from_avro
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        inner = self.inner.render_schema(seen)
        return ["null", inner] if self.null_first else [inner, "null"]

    def convert(self, value: object) -> object:
        if value is None:
            return None
        return self._inner_convert(value)

    def from_avro(self, value: object) -> object:
        if value is None:
            return None
        return self._inner_from_avro(value)


class _Array(TypeAdapter):
    """``list[X]``; accepts lists and tuples."""

    def __init__(self, items: TypeAdapter) -> None:
        self.items = items
        self.passthrough = items.passthrough
        self._item_convert = items.convert
        self._item_from_avro = items.from_avro
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        return {"type": "array", "items": self.items.render_schema(seen)}

    def convert(self, value: object) -> object:
        if not isinstance(value, list | tuple):
            raise _expected("list", value)
        convert = self._item_convert
        try:
            return [convert(item) for item in value]
        except _Mismatch:
            pass
        for index, item in enumerate(value):  # error path only: find which item failed
            try:
                convert(item)
            except _Mismatch as exc:
                raise exc.inside(f"list item [{index}]") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def from_avro(self, value: object) -> object:
        items = cast(list[Any], value)
        if self.passthrough:
            return items
        from_avro = self._item_from_avro
        return [from_avro(item) for item in items]


class _Map(TypeAdapter):
    """``dict[str, X]``; keys are checked to be str."""

    def __init__(self, values: TypeAdapter) -> None:
        self.values = values
        self.passthrough = values.passthrough
        self._value_convert = values.convert
        self._value_from_avro = values.from_avro
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        return {"type": "map", "values": self.values.render_schema(seen)}

    def convert(self, value: object) -> object:
        if not isinstance(value, Mapping):
            raise _expected("dict", value)
        convert = self._value_convert
        out: dict[str, object] = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise _Mismatch(f"expected str key, got {_show(key)}").inside(
                        f"dict key {key!r}"
                    )
                key = str.__str__(key)
            try:
                out[key] = convert(item)
            except _Mismatch as exc:
                raise exc.inside(f"dict value [{key!r}]") from None
        return out

    def from_avro(self, value: object) -> object:
        items = cast(dict[str, Any], value)
        if self.passthrough:
            return items
        from_avro = self._value_from_avro
        return {key: from_avro(item) for key, item in items.items()}


class _Enum(TypeAdapter):
    """An ``Enum`` subclass as an Avro enum of its member names; values are members."""

    def __init__(self, cls: type[enum.Enum], name: str, namespace: str) -> None:
        self.cls = cls
        self.name = name
        self.namespace = namespace
        self.fullname = f"{namespace}.{name}"
        self.symbols = [member.name for member in cls]
        self._by_name: dict[str, enum.Enum] = dict(cls.__members__)
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        if self.fullname in seen:
            return self.fullname
        seen.add(self.fullname)
        return {
            "type": "enum",
            "name": self.name,
            "namespace": self.namespace,
            "symbols": list(self.symbols),
        }

    def convert(self, value: object) -> object:
        if isinstance(value, self.cls):
            return value.name
        shown = ", ".join(self.symbols[:8]) + (", ..." if len(self.symbols) > 8 else "")
        raise _Mismatch(f"expected a {self.cls.__qualname__} member ({shown}), got {_show(value)}")

    def from_avro(self, value: object) -> object:
        if isinstance(value, self.cls):
            return value
        return self._by_name[cast(str, value)]


class _Record(TypeAdapter):
    """A dataclass as an Avro record of its ``init`` fields; ``from_avro`` constructs it."""

    def __init__(
        self,
        cls: type[Any],
        name: str,
        namespace: str,
        fields: list[tuple[str, TypeAdapter, Any]],
    ) -> None:
        self.cls = cls
        self.name = name
        self.namespace = namespace
        self.fullname = f"{namespace}.{name}"
        self.fields = fields  # (name, adapter, Avro default or _MISSING)
        self._names = [name for name, _, _ in fields]
        self._converters = [(name, adapter.convert) for name, adapter, _ in fields]
        self._decoders = [(name, adapter.from_avro) for name, adapter, _ in fields]
        self.schema = self.render_schema(set())

    def render_schema(self, seen: set[str]) -> Any:
        if self.fullname in seen:
            return self.fullname
        seen.add(self.fullname)
        return {
            "type": "record",
            "name": self.name,
            "namespace": self.namespace,
            "fields": [
                _field(name, adapter, default, seen) for name, adapter, default in self.fields
            ],
        }

    def convert(self, value: object) -> object:
        if not isinstance(value, self.cls):
            raise _expected(f"{self.cls.__qualname__} instance", value)
        out: dict[str, object] = {}
        try:
            for name, convert in self._converters:
                out[name] = convert(getattr(value, name))
        except _Mismatch as exc:
            raise exc.inside(f"field {self._names[len(out)]!r}") from None
        return out

    def from_avro(self, value: object) -> object:
        if isinstance(value, self.cls):
            return value
        record = cast(Mapping[str, Any], value)
        return self.cls(**{name: from_avro(record[name]) for name, from_avro in self._decoders})


class _ModelRecord(_Record):
    """A pydantic model: like a dataclass record, but a dict is accepted (and validated by the
    model) at send time, and decoded records are validated by the model again."""

    def convert(self, value: object) -> object:
        if isinstance(value, Mapping):
            try:
                value = self.cls.model_validate(value)
            except ValueError as exc:  # pydantic.ValidationError is a ValueError
                raise _Mismatch(f"invalid {self.cls.__qualname__}: {exc}") from None
        return super().convert(value)

    def from_avro(self, value: object) -> object:
        if isinstance(value, self.cls):
            return value
        record = cast(Mapping[str, Any], value)
        return self.cls.model_validate(
            {name: from_avro(record[name]) for name, from_avro in self._decoders}
        )


def _is_pydantic_model(hint: type) -> bool:
    pydantic = sys.modules.get("pydantic")  # never imported here: only if the app uses it
    return pydantic is not None and issubclass(hint, pydantic.BaseModel)


def _model_default(info: Any) -> Any:
    factory = info.default_factory
    if factory is not None:
        if getattr(info, "default_factory_takes_data", False):
            return _MISSING
        first, second = factory(), factory()
        return first if first == second else _MISSING
    default = info.default
    if type(default).__name__ == "PydanticUndefinedType":
        return _MISSING
    return default


def _field(name: str, adapter: TypeAdapter, default: Any, seen: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": adapter.render_schema(seen)}
    if default is not _MISSING:
        out["default"] = default
    return out


# -- deriving adapters from hints -----------------------------------------------------------

_BY_TYPE: dict[object, TypeAdapter] = {
    str: _String(),
    int: _Long(),
    float: _Double(),
    bool: _Boolean(),
    bytes: _Bytes(),
    type(None): _Null(),
    datetime: _Timestamp(),
    date: _Date(),
    uuid.UUID: _Uuid(),
}


def _hint_name(hint: object) -> str:
    if isinstance(hint, type) and typing.get_origin(hint) is None:
        return hint.__qualname__
    return repr(hint).removeprefix("typing.")


def _unsupported(where: str, hint: object, why: str = "") -> SchemaError:
    reason = f" ({why})" if why else ""
    return SchemaError(
        f"{where}: type {_hint_name(hint)} is not supported{reason}; supported types: "
        f"{SUPPORTED_TYPES}"
    )


class _Builder:
    """Derives adapters for the hints of one schema; shares named types between them."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._named: dict[type, TypeAdapter] = {}
        self._owners: dict[str, type] = {}  # full Avro name -> class, to catch clashes
        self._building: set[type] = set()

    def build(self, hint: object, where: str) -> TypeAdapter:  # noqa: C901 (split pending: issue 14 follow-up)
        if hint is None:
            hint = type(None)
        try:
            known = _BY_TYPE.get(hint)
        except TypeError:  # unhashable annotation
            raise _unsupported(where, hint) from None
        if known is not None:
            return known
        if isinstance(hint, typing.NewType):
            return self.build(hint.__supertype__, where)
        origin = typing.get_origin(hint)
        args = typing.get_args(hint)
        if origin is typing.Union or origin is types.UnionType:
            others = [arg for arg in args if arg is not type(None)]
            if len(others) == 1 and len(args) == 2:
                return _Optional(self.build(others[0], where))
            raise SchemaError(
                f"{where}: type {_hint_name(hint)} is not supported: unions other than "
                f"Optional[X] (X | None) are not supported; supported types: {SUPPORTED_TYPES}"
            )
        if origin is list or hint is list:
            if len(args) != 1:
                raise _unsupported(where, hint, "a list needs its item type, e.g. list[int]")
            return _Array(self.build(args[0], f"{where}: list item type"))
        if origin is dict or hint is dict:
            if len(args) != 2:
                raise _unsupported(where, hint, "a dict needs its types, e.g. dict[str, int]")
            if args[0] is not str:
                raise _unsupported(where, hint, "dict keys must be str: Avro maps have string keys")
            return _Map(self.build(args[1], f"{where}: dict value type"))
        if isinstance(hint, type) and origin is None:
            if issubclass(hint, enum.Enum):
                return self._enum(hint, where)
            if dataclasses.is_dataclass(hint):
                return self._record(hint, where)
            if _is_pydantic_model(hint):
                return self._model(hint, where)
        raise _unsupported(where, hint)

    def _model(self, cls: type[Any], where: str) -> TypeAdapter:
        """A pydantic ``BaseModel`` as a record of its fields (the optional pydantic extra)."""
        known = self._named.get(cls)
        if known is not None:
            return known
        label = cls.__qualname__
        if cls in self._building:
            raise SchemaError(
                f"{where}: model {label} refers to itself; recursive types are not supported"
            )
        name = self._claim(cls, where)
        self._building.add(cls)
        try:
            fields: list[tuple[str, TypeAdapter, Any]] = []
            for field_name, info in cls.model_fields.items():
                field_where = f"{where}: field {field_name!r} of {label}"
                if info.alias is not None or info.validation_alias is not None:
                    raise SchemaError(
                        f"{field_where}: field aliases are not supported in task arguments "
                        "(the Avro field name is the attribute name)"
                    )
                _check_field_name(field_name, field_where)
                adapter = self.build(info.annotation, field_where)
                default = _model_default(info)
                adapter, avro_default = _with_default(adapter, default, field_where)
                fields.append((field_name, adapter, avro_default))
        finally:
            self._building.discard(cls)
        adapter = _ModelRecord(cls, name, self.namespace, fields)
        self._named[cls] = adapter
        return adapter

    def _claim(self, cls: type, where: str) -> str:
        name = avro_name(f"{cls.__module__}.{cls.__qualname__}")
        owner = self._owners.setdefault(f"{self.namespace}.{name}", cls)
        if owner is not cls:
            raise SchemaError(
                f"{where}: {owner.__module__}.{owner.__qualname__} and "
                f"{cls.__module__}.{cls.__qualname__} both map to the Avro name {name!r}; "
                "rename one of them"
            )
        return name

    def _enum(self, cls: type[enum.Enum], where: str) -> TypeAdapter:
        known = self._named.get(cls)
        if known is not None:
            return known
        if issubclass(cls, enum.Flag):
            raise _unsupported(where, cls, "Flag enums cannot be combined in an Avro enum")
        symbols = [member.name for member in cls]
        if not symbols:
            raise _unsupported(where, cls, "the Enum has no members")
        for symbol in symbols:
            if not _AVRO_NAME.fullmatch(symbol):
                raise SchemaError(
                    f"{where}: {cls.__qualname__} member {symbol!r} is not a valid Avro enum "
                    "symbol (ASCII letters, digits and _ only)"
                )
        adapter = _Enum(cls, self._claim(cls, where), self.namespace)
        self._named[cls] = adapter
        return adapter

    def _record(self, cls: type[Any], where: str) -> TypeAdapter:
        known = self._named.get(cls)
        if known is not None:
            return known
        label = cls.__qualname__
        if cls in self._building:
            raise SchemaError(
                f"{where}: dataclass {label} refers to itself; recursive types are not supported"
            )
        name = self._claim(cls, where)
        try:
            hints = typing.get_type_hints(cls)
        except Exception as exc:  # NameError for unresolvable forward references, and others
            raise SchemaError(
                f"{where}: cannot resolve the type hints of dataclass {label}: {exc}"
            ) from exc
        for attr, hint in hints.items():
            if isinstance(hint, dataclasses.InitVar) and not hasattr(cls, attr):
                raise SchemaError(
                    f"{where}: dataclass {label} has InitVar {attr!r} without a default; "
                    "InitVar fields are not transported"
                )
        self._building.add(cls)
        try:
            fields: list[tuple[str, TypeAdapter, Any]] = []
            for item in dataclasses.fields(cls):
                if not item.init:  # derived (e.g. in __post_init__); the constructor recomputes it
                    continue
                field_where = f"{where}: field {item.name!r} of {label}"
                _check_field_name(item.name, field_where)
                adapter = self.build(hints[item.name], field_where)
                default = _field_default(item)
                adapter, avro_default = _with_default(adapter, default, field_where)
                fields.append((item.name, adapter, avro_default))
        finally:
            self._building.discard(cls)
        adapter = _Record(cls, name, self.namespace, fields)
        self._named[cls] = adapter
        return adapter


def _field_default(item: dataclasses.Field[Any]) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        # a deterministic factory (list, dict, a constant) gives the Avro default; one that
        # differs per call (datetime.now, uuid4) gives none, so the schema stays stable
        first, second = item.default_factory(), item.default_factory()
        if first == second:
            return first
    return _MISSING


def _check_field_name(name: str, where: str) -> None:
    if not _AVRO_NAME.fullmatch(name):
        raise SchemaError(
            f"{where}: {name!r} is not a valid Avro field name (ASCII letters, digits and _ "
            "only); rename it"
        )


def _with_default(adapter: TypeAdapter, default: Any, where: str) -> tuple[TypeAdapter, Any]:
    """Check a Python default fits; return the adapter to use and the Avro default (or _MISSING).

    Every supported type has an Avro default (see :func:`_avro_json`), so adding a parameter or
    field with a default is a backward-compatible change by Avro's rules. A non-None default of
    an optional type puts the type before "null", since an Avro union's default must match its
    first branch. Only values JSON cannot carry (NaN, infinities), and nested optional values
    that do not match their union's first branch, get no Avro default.
    """
    if default is _MISSING:
        return adapter, _MISSING
    try:
        converted = adapter.convert(default)
    except _Mismatch as exc:
        raise SchemaError(
            f"{where}: the default {default!r} does not fit the declared type: {exc.describe()}"
        ) from None
    if default is None:
        return adapter, None
    chosen = adapter
    if isinstance(adapter, _Optional):
        chosen = _Optional(adapter.inner, null_first=False)
    try:
        return chosen, _avro_json(chosen, converted)
    except _Unrepresentable:
        return adapter, _MISSING


class _Unrepresentable(Exception):
    """Internal: a value has no Avro JSON form as a default."""


def _avro_json(adapter: TypeAdapter, value: Any) -> Any:
    """The Avro JSON form of a converted value, as a schema default (Avro spec, "Complex
    Types: Records", default values): bytes as a string of code points 0-255, logical types as
    their underlying int/long/string, enums as the symbol, records as objects, and a union's
    value as a value of its first branch."""
    if isinstance(adapter, _Bytes):
        return cast(bytes, value).decode("latin-1")
    if isinstance(adapter, _Double):
        if not math.isfinite(cast(float, value)):
            raise _Unrepresentable
        return value
    if isinstance(adapter, _Optional):
        if (value is None) != adapter.null_first:
            raise _Unrepresentable
        return None if value is None else _avro_json(adapter.inner, value)
    if isinstance(adapter, _Array):
        return [_avro_json(adapter.items, item) for item in cast(list[Any], value)]
    if isinstance(adapter, _Map):
        items = cast(dict[str, Any], value)
        return {key: _avro_json(adapter.values, item) for key, item in items.items()}
    if isinstance(adapter, _Record):
        record = cast(dict[str, Any], value)
        return {name: _avro_json(inner, record[name]) for name, inner, _ in adapter.fields}
    return value  # string, long, boolean, null, enum symbol, or a logical type's int/long/string


def adapter_for(hint: object, *, namespace: str, where: str) -> TypeAdapter:
    """The adapter for ``hint``. Raises :class:`SchemaError` (prefixed by ``where``) if unsupported.

    ``namespace`` is the Avro namespace of records and enums derived from user classes.
    """
    return _Builder(namespace).build(hint, where)


# -- function signatures --------------------------------------------------------------------


def _hints_of(func: Callable[..., Any], where: str) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=False)
    except Exception as exc:  # NameError for unresolvable forward references, and others
        raise SchemaError(f"{where}: cannot resolve its type hints: {exc}") from exc


@dataclass(frozen=True)
class Signature:
    """The Avro view of a task function's parameters. Build it with :func:`signature_of`."""

    record_schema: dict[str, Any]
    task_name: str
    _inspect: inspect.Signature = field(repr=False, compare=False)
    _names: tuple[str, ...] = field(repr=False, compare=False)
    _adapters: tuple[TypeAdapter, ...] = field(repr=False, compare=False)
    _positional_only: int = field(repr=False, compare=False)
    _max_positional: int = field(repr=False, compare=False)
    # _tails[i]: the defaults of parameters i.. when all of them have one, else None
    _tails: tuple[tuple[Any, ...] | None, ...] = field(repr=False, compare=False)
    _defaults: tuple[Any, ...] = field(repr=False, compare=False)  # _MISSING: required
    _converters: tuple[Callable[[object], object], ...] = field(
        init=False, repr=False, compare=False
    )
    _paths: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _passthrough: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "_converters", tuple(adapter.convert for adapter in self._adapters))
        set_(self, "_paths", tuple(f"task {self.task_name!r} parameter {n!r}" for n in self._names))
        set_(self, "_passthrough", all(adapter.passthrough for adapter in self._adapters))

    @property
    def parameters(self) -> tuple[str, ...]:
        """Parameter names, in order (also the record's field names)."""
        return self._names

    def to_record(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind call arguments, apply defaults and convert each to its Avro value.

        Raises :class:`ArgumentError` for arguments that do not bind or do not fit.
        """
        values: Sequence[Any] | None = None
        if len(args) <= self._max_positional:
            if not kwargs:
                tail = self._tails[len(args)]
                if tail is not None:
                    values = args + tail if tail else args
            else:
                values = self._fast_bind(args, kwargs)
        if values is None:  # a call the fast paths do not cover, or a wrong one
            values = self._bind(args, kwargs)
        record: dict[str, Any] = {}
        try:
            for name, convert, value in zip(self._names, self._converters, values, strict=True):
                record[name] = convert(value)
        except _Mismatch as exc:
            raise ArgumentError(exc.message(self._paths[len(record)])) from None
        return record

    def _fast_bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any] | None:
        """Bind like Python does, or None when the call is wrong (``_bind`` says how)."""
        values = list(args)
        names = self._names
        defaults = self._defaults
        positional_only = self._positional_only
        used = 0
        for index in range(len(args), len(names)):
            name = names[index]
            if index >= positional_only and name in kwargs:
                values.append(kwargs[name])
                used += 1
            elif defaults[index] is _MISSING:
                return None
            else:
                values.append(defaults[index])
        if used != len(kwargs):  # unknown names, or a parameter also given positionally
            return None
        return values

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
        try:
            bound = self._inspect.bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"task {self.task_name!r}: {exc}") from None
        bound.apply_defaults()
        arguments = bound.arguments
        return tuple(arguments[name] for name in self._names)

    # -- chains: a step whose first argument is the previous step's result ------------------
    def partial_schema(self) -> dict[str, Any]:
        """The argument record without the first parameter (filled in at run time)."""
        if not self._names:
            raise SchemaError(
                f"task {self.task_name!r} takes no arguments, so it cannot follow a chain step"
            )
        first, rest = self.record_schema["fields"][0], self.record_schema["fields"][1:]
        defined = _named_types(first["type"])
        if defined and any(_mentions(f["type"], defined) for f in rest):
            raise SchemaError(
                f"task {self.task_name!r}: its first parameter defines a type that later "
                "parameters reuse; such a task cannot follow a chain step"
            )
        return {
            **self.record_schema,
            "name": self.record_schema["name"] + "_partial",
            "fields": rest,
        }

    def to_partial_record(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
        """Bind and convert every argument but the first (which a previous step supplies)."""
        params = list(self._inspect.parameters.values())
        try:
            bound = self._inspect.replace(parameters=params[1:]).bind(*args, **kwargs)
        except TypeError as exc:
            raise ArgumentError(f"task {self.task_name!r}: {exc}") from None
        bound.apply_defaults()
        record: dict[str, Any] = {}
        for name, convert, path in zip(
            self._names[1:], self._converters[1:], self._paths[1:], strict=True
        ):
            try:
                record[name] = convert(bound.arguments[name])
            except _Mismatch as exc:
                raise ArgumentError(exc.message(path)) from None
        return record

    def complete(self, partial: Mapping[str, Any], first: object) -> dict[str, Any]:
        """The full argument record: ``first`` (a Python value) for the first parameter."""
        try:
            head = self._converters[0](first)
        except _Mismatch as exc:
            raise ArgumentError(exc.message(self._paths[0])) from None
        return {self._names[0]: head, **partial}

    def from_plain(
        self, args: Sequence[Any], kwargs: Mapping[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Call arguments from plain data (e.g. JSON): dicts become dataclasses, enum names
        become members, epoch microseconds become datetimes; then validated like a send."""
        values = self._bind(tuple(args), dict(kwargs))
        record: dict[str, Any] = {}
        for path, name, adapter, value in zip(
            self._paths, self._names, self._adapters, values, strict=True
        ):
            try:
                record[name] = _from_plain(adapter, value)
            except _Mismatch as exc:
                raise ArgumentError(exc.message(path)) from None
        plain = self.from_record(record)
        self.to_record(*plain)  # the same checks as a send, with the same messages
        return plain

    def from_record(self, record: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Call arguments from a decoded record: positional-only ones in args, the rest kwargs."""
        try:
            if self._passthrough:
                kwargs = {name: record[name] for name in self._names}
            else:
                kwargs = {
                    name: adapter.from_avro(record[name])
                    for name, adapter in zip(self._names, self._adapters, strict=True)
                }
        except KeyError as exc:
            raise ArgumentError(
                f"task {self.task_name!r}: record has no field {exc.args[0]!r}"
            ) from None
        if self._positional_only:
            args = tuple(kwargs.pop(name) for name in self._names[: self._positional_only])
            return args, kwargs
        return (), kwargs


def _describe(adapter: TypeAdapter) -> str:
    """The Python type an adapter stands for, as a user would write it."""
    if isinstance(adapter, _Optional):
        return f"{_describe(adapter.inner)} | None"
    if isinstance(adapter, _Array):
        return f"list[{_describe(adapter.items)}]"
    if isinstance(adapter, _Map):
        return f"dict[str, {_describe(adapter.values)}]"
    if isinstance(adapter, _Enum):
        return f"{adapter.cls.__qualname__} (one of {', '.join(adapter.symbols)})"
    if isinstance(adapter, _Record):
        return adapter.cls.__qualname__
    names = {
        _String: "str",
        _Long: "int",
        _Double: "float",
        _Boolean: "bool",
        _Bytes: "bytes",
        _Null: "None",
        _Timestamp: "datetime",
        _Date: "date",
        _Uuid: "UUID",
    }
    return names.get(type(adapter), type(adapter).__name__.strip("_").lower())


def _from_plain(adapter: TypeAdapter, value: object) -> object:  # noqa: C901 (split pending: issue 14 follow-up)
    """Plain data (JSON) to the Python value ``adapter`` stands for: dicts become dataclasses
    (unknown or missing fields refused), enum names members. Raises :class:`_Mismatch`."""
    if value is None:
        return None  # the send checks below say whether None is allowed
    if isinstance(adapter, _Optional):
        return _from_plain(adapter.inner, value)
    if isinstance(adapter, _Record):
        return _record_from_plain(adapter, value)
    if isinstance(adapter, _Array):
        if not isinstance(value, list | tuple):
            raise _expected(f"a list ({_describe(adapter)})", value)
        items = []
        for index, item in enumerate(value):
            try:
                items.append(_from_plain(adapter.items, item))
            except _Mismatch as exc:
                raise exc.inside(f"list item [{index}]") from None
        return items
    if isinstance(adapter, _Map):
        if not isinstance(value, Mapping):
            raise _expected(f"an object ({_describe(adapter)})", value)
        out: dict[object, object] = {}
        for key, item in value.items():
            try:
                out[key] = _from_plain(adapter.values, item)
            except _Mismatch as exc:
                raise exc.inside(f"dict value [{key!r}]") from None
        return out
    try:
        return adapter.from_avro(value)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        raise _expected(_describe(adapter), value) from None


def _record_from_plain(adapter: _Record, value: object) -> object:
    cls = adapter.cls
    if isinstance(value, cls):
        return value
    label = cls.__qualname__
    adapters = {name: a for name, a, _ in adapter.fields}
    listing = ", ".join(f"{name} ({_describe(a)})" for name, a in adapters.items())
    if not isinstance(value, Mapping):
        raise _expected(f"an object with the fields of {label}: {listing}", value)
    unknown = [key for key in value if key not in adapters]
    if unknown:
        raise _Mismatch(f"{label} has no field {unknown[0]!r}; its fields are: {listing}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in value]
    if missing:
        expected = _describe(adapters[missing[0]]) if missing[0] in adapters else "a value"
        raise _Mismatch(f"{label} field {missing[0]!r} ({expected}) is missing")
    kwargs: dict[str, object] = {}
    for key, item in value.items():
        try:
            kwargs[str(key)] = _from_plain(adapters[key], item)
        except _Mismatch as exc:
            raise exc.inside(f"field {key!r}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise _Mismatch(f"{label}: {exc}") from None


def signature_of(func: Callable[..., Any], *, task_name: str) -> Signature:
    """Derive the argument record of ``func``. Raises :class:`SchemaError` if it cannot be."""
    where = f"task {task_name!r}"
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{where}: cannot read the signature of {func!r}: {exc}") from exc
    hints = _hints_of(func, where)
    builder = _Builder(TYPES_NAMESPACE)
    seen: set[str] = set()
    fields: list[dict[str, Any]] = []
    names: list[str] = []
    adapters: list[TypeAdapter] = []
    defaults: list[Any] = []
    positional_only = max_positional = 0
    for param in sig.parameters.values():
        param_where = f"{where} parameter {param.name!r}"
        if param.kind is param.VAR_POSITIONAL:
            raise SchemaError(
                f"{param_where}: *{param.name} is not supported; a task needs named parameters "
                f"(take a list[X] parameter instead)"
            )
        if param.kind is param.VAR_KEYWORD:
            raise SchemaError(
                f"{param_where}: **{param.name} is not supported; a task needs named parameters "
                f"(take a dict[str, X] parameter instead)"
            )
        if param.name not in hints:
            raise SchemaError(
                f"{param_where} has no type annotation; every task parameter needs one so its "
                f"Avro type can be derived (supported types: {SUPPORTED_TYPES})"
            )
        _check_field_name(param.name, param_where)
        adapter = builder.build(hints[param.name], param_where)
        default = _MISSING if param.default is param.empty else param.default
        adapter, avro_default = _with_default(adapter, default, param_where)
        fields.append(_field(param.name, adapter, avro_default, seen))
        names.append(param.name)
        adapters.append(adapter)
        defaults.append(default)
        if param.kind is param.POSITIONAL_ONLY:
            positional_only += 1
        if param.kind is not param.KEYWORD_ONLY:
            max_positional += 1
    tails: list[tuple[Any, ...] | None] = []
    for start in range(len(defaults) + 1):
        rest = tuple(defaults[start:])
        tails.append(None if any(d is _MISSING for d in rest) else rest)
    record_schema: dict[str, Any] = {
        "type": "record",
        "name": avro_name(task_name) + "_args",
        "namespace": TASKS_NAMESPACE,
        "fields": fields,
    }
    return Signature(
        record_schema=record_schema,
        task_name=task_name,
        _inspect=sig,
        _names=tuple(names),
        _adapters=tuple(adapters),
        _positional_only=positional_only,
        _max_positional=max_positional,
        _tails=tuple(tails),
        _defaults=tuple(defaults),
    )


def return_adapter(
    func: Callable[..., Any], *, task_name: str
) -> tuple[dict[str, Any], TypeAdapter]:
    """The result record schema of ``func`` (one field, ``value``) and the adapter for it.

    A missing return annotation, or ``None``, gives ``"null"``: such a task returns nothing.
    """
    where = f"task {task_name!r}"
    hints = _hints_of(func, where)
    hint = hints.get("return", _MISSING)
    adapter: TypeAdapter
    if hint is _MISSING:
        adapter = _Null(
            note="the task has no return annotation; annotate it (e.g. -> int) to return a value"
        )
    else:
        adapter = _Builder(TYPES_NAMESPACE).build(hint, f"{where} return type")
    schema: dict[str, Any] = {
        "type": "record",
        "name": avro_name(task_name) + "_result",
        "namespace": TASKS_NAMESPACE,
        "fields": [{"name": "value", "type": adapter.render_schema(set())}],
    }
    return schema, adapter


def _named_types(schema: Any) -> set[str]:
    out: set[str] = set()
    if isinstance(schema, dict):
        if schema.get("type") in ("record", "enum") and "name" in schema:
            out.add(str(schema["name"]))
        for value in schema.values():
            out |= _named_types(value)
    elif isinstance(schema, list):
        for item in schema:
            out |= _named_types(item)
    return out


def _mentions(schema: Any, names: set[str]) -> bool:
    if isinstance(schema, str):
        return schema in names or schema.rsplit(".", 1)[-1] in names
    if isinstance(schema, dict):
        return any(_mentions(v, names) for k, v in schema.items() if k != "name")
    if isinstance(schema, list):
        return any(_mentions(item, names) for item in schema)
    return False
