"""Deriving adapters from Python type hints, and Avro defaults from Python defaults.

:func:`adapter_for` (and :class:`AdapterBuilder`, which shares named types within one schema)
maps a hint to its adapter. Supported hints: ``str``, ``int`` (Avro long), ``float``
(double), ``bool``, ``bytes``, ``None``, ``X | None``, ``list[X]``, ``dict[str, X]``, ``Enum``
subclasses, dataclasses, ``datetime.datetime`` (aware, timestamp-micros), ``datetime.date``
and ``uuid.UUID``; and, with the optional pydantic extra, ``pydantic.BaseModel`` subclasses
(records like dataclasses; a dict argument is validated by the model at send time).

Invariants: adapters are derived once, when a task is declared; a hint that cannot be mapped
raises :class:`SchemaError` then, naming where it is and listing what is supported. A default
that does not fit its type is refused; one JSON cannot carry gets no Avro default.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import sys
import types
import typing
import uuid
from datetime import date, datetime
from typing import Any, cast

from streamtasks.errors import SchemaError
from streamtasks.wire.schema.adapters import (
    AVRO_NAME,
    MISSING,
    SUPPORTED_TYPES,
    BooleanAdapter,
    BytesAdapter,
    DateAdapter,
    DoubleAdapter,
    LongAdapter,
    Mismatch,
    NullAdapter,
    StringAdapter,
    TimestampAdapter,
    TypeAdapter,
    UuidAdapter,
    avro_name,
)
from streamtasks.wire.schema.composites import (
    ArrayAdapter,
    EnumAdapter,
    MapAdapter,
    ModelRecordAdapter,
    OptionalAdapter,
    RecordAdapter,
)

__all__ = [
    "AdapterBuilder",
    "adapter_for",
    "check_field_name",
    "with_default",
]


def _is_pydantic_model(hint: type) -> bool:
    pydantic = sys.modules.get("pydantic")  # never imported here: only if the app uses it
    return pydantic is not None and issubclass(hint, pydantic.BaseModel)


def _model_default(info: Any) -> Any:
    factory = info.default_factory
    if factory is not None:
        if getattr(info, "default_factory_takes_data", False):
            return MISSING
        first, second = factory(), factory()
        return first if first == second else MISSING
    default = info.default
    if type(default).__name__ == "PydanticUndefinedType":
        return MISSING
    return default


_BY_TYPE: dict[object, TypeAdapter] = {
    str: StringAdapter(),
    int: LongAdapter(),
    float: DoubleAdapter(),
    bool: BooleanAdapter(),
    bytes: BytesAdapter(),
    type(None): NullAdapter(),
    datetime: TimestampAdapter(),
    date: DateAdapter(),
    uuid.UUID: UuidAdapter(),
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


class AdapterBuilder:
    """Derives adapters for the hints of one schema; shares named types between them."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self._named: dict[type, TypeAdapter] = {}
        self._owners: dict[str, type] = {}  # full Avro name -> class, to catch clashes
        self._building: set[type] = set()

    def build(self, hint: object, where: str) -> TypeAdapter:
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
        if origin is not None or hint is list or hint is dict:
            return self._generic(hint, origin, where)
        if isinstance(hint, type):
            return self._user_class(hint, where)
        raise _unsupported(where, hint)

    def _generic(self, hint: object, origin: object, where: str) -> TypeAdapter:
        """``X | None``, ``list[X]``, ``dict[str, X]`` (and the bare ``list``/``dict``, which
        are refused for lacking their types)."""
        args = typing.get_args(hint)
        if origin is typing.Union or origin is types.UnionType:
            others = [arg for arg in args if arg is not type(None)]
            if len(others) == 1 and len(args) == 2:
                return OptionalAdapter(self.build(others[0], where))
            raise SchemaError(
                f"{where}: type {_hint_name(hint)} is not supported: unions other than "
                f"Optional[X] (X | None) are not supported; supported types: {SUPPORTED_TYPES}"
            )
        if origin is list or hint is list:
            if len(args) != 1:
                raise _unsupported(where, hint, "a list needs its item type, e.g. list[int]")
            return ArrayAdapter(self.build(args[0], f"{where}: list item type"))
        if origin is dict or hint is dict:
            if len(args) != 2:
                raise _unsupported(where, hint, "a dict needs its types, e.g. dict[str, int]")
            if args[0] is not str:
                raise _unsupported(where, hint, "dict keys must be str: Avro maps have string keys")
            return MapAdapter(self.build(args[1], f"{where}: dict value type"))
        raise _unsupported(where, hint)

    def _user_class(self, hint: type, where: str) -> TypeAdapter:
        """An Enum, a dataclass or a pydantic model."""
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
        self._refuse_recursion(cls, where, "model")
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
                check_field_name(field_name, field_where)
                adapter = self.build(info.annotation, field_where)
                default = _model_default(info)
                adapter, avro_default = with_default(adapter, default, field_where)
                fields.append((field_name, adapter, avro_default))
        finally:
            self._building.discard(cls)
        adapter = ModelRecordAdapter(cls, name, self.namespace, fields)
        self._named[cls] = adapter
        return adapter

    def _refuse_recursion(self, cls: type, where: str, kind: str) -> None:
        if cls in self._building:
            raise SchemaError(
                f"{where}: {kind} {cls.__qualname__} refers to itself; recursive types are not "
                "supported"
            )

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
            if not AVRO_NAME.fullmatch(symbol):
                raise SchemaError(
                    f"{where}: {cls.__qualname__} member {symbol!r} is not a valid Avro enum "
                    "symbol (ASCII letters, digits and _ only)"
                )
        adapter = EnumAdapter(cls, self._claim(cls, where), self.namespace)
        self._named[cls] = adapter
        return adapter

    def _record(self, cls: type[Any], where: str) -> TypeAdapter:
        known = self._named.get(cls)
        if known is not None:
            return known
        label = cls.__qualname__
        self._refuse_recursion(cls, where, "dataclass")
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
                check_field_name(item.name, field_where)
                adapter = self.build(hints[item.name], field_where)
                default = _field_default(item)
                adapter, avro_default = with_default(adapter, default, field_where)
                fields.append((item.name, adapter, avro_default))
        finally:
            self._building.discard(cls)
        adapter = RecordAdapter(cls, name, self.namespace, fields)
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
    return MISSING


def check_field_name(name: str, where: str) -> None:
    if not AVRO_NAME.fullmatch(name):
        raise SchemaError(
            f"{where}: {name!r} is not a valid Avro field name (ASCII letters, digits and _ "
            "only); rename it"
        )


def with_default(adapter: TypeAdapter, default: Any, where: str) -> tuple[TypeAdapter, Any]:
    """Check a Python default fits; return the adapter to use and the Avro default (or MISSING).

    Every supported type has an Avro default (see :func:`_avro_json`), so adding a parameter or
    field with a default is a backward-compatible change by Avro's rules. A non-None default of
    an optional type puts the type before "null", since an Avro union's default must match its
    first branch. Only values JSON cannot carry (NaN, infinities), and nested optional values
    that do not match their union's first branch, get no Avro default.
    """
    if default is MISSING:
        return adapter, MISSING
    try:
        converted = adapter.convert(default)
    except Mismatch as exc:
        raise SchemaError(
            f"{where}: the default {default!r} does not fit the declared type: {exc.describe()}"
        ) from None
    if default is None:
        return adapter, None
    chosen = adapter
    if isinstance(adapter, OptionalAdapter):
        chosen = OptionalAdapter(adapter.inner, null_first=False)
    try:
        return chosen, _avro_json(chosen, converted)
    except _Unrepresentable:
        return adapter, MISSING


class _Unrepresentable(Exception):
    """Internal: a value has no Avro JSON form as a default."""


def _avro_json(adapter: TypeAdapter, value: Any) -> Any:
    """The Avro JSON form of a converted value, as a schema default (Avro spec, "Complex
    Types: Records", default values): bytes as a string of code points 0-255, logical types as
    their underlying int/long/string, enums as the symbol, records as objects, and a union's
    value as a value of its first branch."""
    if isinstance(adapter, BytesAdapter):
        return cast(bytes, value).decode("latin-1")
    if isinstance(adapter, DoubleAdapter):
        if not math.isfinite(cast(float, value)):
            raise _Unrepresentable
        return value
    if isinstance(adapter, OptionalAdapter):
        if (value is None) != adapter.null_first:
            raise _Unrepresentable
        return None if value is None else _avro_json(adapter.inner, value)
    if isinstance(adapter, ArrayAdapter):
        return [_avro_json(adapter.items, item) for item in cast(list[Any], value)]
    if isinstance(adapter, MapAdapter):
        items = cast(dict[str, Any], value)
        return {key: _avro_json(adapter.values, item) for key, item in items.items()}
    if isinstance(adapter, RecordAdapter):
        record = cast(dict[str, Any], value)
        return {name: _avro_json(inner, record[name]) for name, inner, _ in adapter.fields}
    return value  # string, long, boolean, null, enum symbol, or a logical type's int/long/string


def adapter_for(hint: object, *, namespace: str, where: str) -> TypeAdapter:
    """The adapter for ``hint``. Raises :class:`SchemaError` (prefixed by ``where``) if unsupported.

    ``namespace`` is the Avro namespace of records and enums derived from user classes.
    """
    return AdapterBuilder(namespace).build(hint, where)
