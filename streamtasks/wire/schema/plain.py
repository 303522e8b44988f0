"""Call arguments from plain data (e.g. JSON from the command line), and types as users write them.

:func:`from_plain` turns plain data into the Python value an adapter stands for (dicts become
dataclasses, enum names members, epoch microseconds datetimes); :func:`describe` names the
Python type an adapter stands for, for error messages.

Invariant: unknown or missing record fields are refused with a :class:`~.adapters.Mismatch`
that lists the fields; the result is then checked like any send.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from streamtasks.wire.schema.adapters import (
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
    expected_value,
)
from streamtasks.wire.schema.composites import (
    ArrayAdapter,
    EnumAdapter,
    MapAdapter,
    OptionalAdapter,
    RecordAdapter,
)

__all__ = [
    "describe",
    "from_plain",
]


def describe(adapter: TypeAdapter) -> str:
    """The Python type an adapter stands for, as a user would write it."""
    if isinstance(adapter, OptionalAdapter):
        return f"{describe(adapter.inner)} | None"
    if isinstance(adapter, ArrayAdapter):
        return f"list[{describe(adapter.items)}]"
    if isinstance(adapter, MapAdapter):
        return f"dict[str, {describe(adapter.values)}]"
    if isinstance(adapter, EnumAdapter):
        return f"{adapter.cls.__qualname__} (one of {', '.join(adapter.symbols)})"
    if isinstance(adapter, RecordAdapter):
        return adapter.cls.__qualname__
    names = {
        StringAdapter: "str",
        LongAdapter: "int",
        DoubleAdapter: "float",
        BooleanAdapter: "bool",
        BytesAdapter: "bytes",
        NullAdapter: "None",
        TimestampAdapter: "datetime",
        DateAdapter: "date",
        UuidAdapter: "UUID",
    }
    return names.get(type(adapter), type(adapter).__name__.strip("_").lower())


def from_plain(adapter: TypeAdapter, value: object) -> object:
    """Plain data (JSON) to the Python value ``adapter`` stands for: dicts become dataclasses
    (unknown or missing fields refused), enum names members. Raises :class:`Mismatch`."""
    if value is None:
        return None  # the send checks below say whether None is allowed
    if isinstance(adapter, OptionalAdapter):
        return from_plain(adapter.inner, value)
    if isinstance(adapter, RecordAdapter):
        return _record_from_plain(adapter, value)
    if isinstance(adapter, ArrayAdapter):
        return _list_from_plain(adapter, value)
    if isinstance(adapter, MapAdapter):
        return _dict_from_plain(adapter, value)
    try:
        return adapter.from_avro(value)
    except (TypeError, ValueError, KeyError, AttributeError, OverflowError):
        raise expected_value(describe(adapter), value) from None


def _list_from_plain(adapter: ArrayAdapter, value: object) -> object:
    if not isinstance(value, list | tuple):
        raise expected_value(f"a list ({describe(adapter)})", value)
    items = []
    for index, item in enumerate(value):
        try:
            items.append(from_plain(adapter.items, item))
        except Mismatch as exc:
            raise exc.inside(f"list item [{index}]") from None
    return items


def _dict_from_plain(adapter: MapAdapter, value: object) -> object:
    if not isinstance(value, Mapping):
        raise expected_value(f"an object ({describe(adapter)})", value)
    out: dict[object, object] = {}
    for key, item in value.items():
        try:
            out[key] = from_plain(adapter.values, item)
        except Mismatch as exc:
            raise exc.inside(f"dict value [{key!r}]") from None
    return out


def _record_from_plain(adapter: RecordAdapter, value: object) -> object:
    cls = adapter.cls
    if isinstance(value, cls):
        return value
    label = cls.__qualname__
    adapters = {name: a for name, a, _ in adapter.fields}
    listing = ", ".join(f"{name} ({describe(a)})" for name, a in adapters.items())
    if not isinstance(value, Mapping):
        raise expected_value(f"an object with the fields of {label}: {listing}", value)
    unknown = [key for key in value if key not in adapters]
    if unknown:
        raise Mismatch(f"{label} has no field {unknown[0]!r}; its fields are: {listing}")
    required = [
        f.name
        for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    missing = [name for name in required if name not in value]
    if missing:
        expected = describe(adapters[missing[0]]) if missing[0] in adapters else "a value"
        raise Mismatch(f"{label} field {missing[0]!r} ({expected}) is missing")
    kwargs: dict[str, object] = {}
    for key, item in value.items():
        try:
            kwargs[str(key)] = from_plain(adapters[key], item)
        except Mismatch as exc:
            raise exc.inside(f"field {key!r}") from None
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise Mismatch(f"{label}: {exc}") from None
