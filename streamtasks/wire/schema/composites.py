"""The adapters that hold other adapters: ``X | None``, lists, dicts, enums and records.

Invariants: a container's conversion checks every element with its element adapter and, on a
mismatch, says where (``list item [i]``, ``dict value ['k']``, ``field 'f'``); a named type
(record, enum) is defined in full where it first occurs in a schema and referenced by its full
name afterwards, as Avro requires (:meth:`~.adapters.TypeAdapter.render_schema` with ``seen``).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, cast

from streamtasks.wire.schema.adapters import (
    MISSING,
    Mismatch,
    TypeAdapter,
    expected_value,
    show_value,
)

__all__ = [
    "ArrayAdapter",
    "EnumAdapter",
    "MapAdapter",
    "ModelRecordAdapter",
    "OptionalAdapter",
    "RecordAdapter",
    "record_field",
]


class OptionalAdapter(TypeAdapter):
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


class ArrayAdapter(TypeAdapter):
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
            raise expected_value("list", value)
        convert = self._item_convert
        try:
            return [convert(item) for item in value]
        except Mismatch:
            pass
        for index, item in enumerate(value):  # error path only: find which item failed
            try:
                convert(item)
            except Mismatch as exc:
                raise exc.inside(f"list item [{index}]") from None
        raise AssertionError("unreachable")  # pragma: no cover

    def from_avro(self, value: object) -> object:
        items = cast(list[Any], value)
        if self.passthrough:
            return items
        from_avro = self._item_from_avro
        return [from_avro(item) for item in items]


class MapAdapter(TypeAdapter):
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
            raise expected_value("dict", value)
        convert = self._value_convert
        out: dict[str, object] = {}
        for key, item in value.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    raise Mismatch(f"expected str key, got {show_value(key)}").inside(
                        f"dict key {key!r}"
                    )
                key = str.__str__(key)
            try:
                out[key] = convert(item)
            except Mismatch as exc:
                raise exc.inside(f"dict value [{key!r}]") from None
        return out

    def from_avro(self, value: object) -> object:
        items = cast(dict[str, Any], value)
        if self.passthrough:
            return items
        from_avro = self._value_from_avro
        return {key: from_avro(item) for key, item in items.items()}


class EnumAdapter(TypeAdapter):
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
        raise Mismatch(
            f"expected a {self.cls.__qualname__} member ({shown}), got {show_value(value)}"
        )

    def from_avro(self, value: object) -> object:
        if isinstance(value, self.cls):
            return value
        return self._by_name[cast(str, value)]


class RecordAdapter(TypeAdapter):
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
        self.fields = fields  # (name, adapter, Avro default or MISSING)
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
                record_field(name, adapter, default, seen) for name, adapter, default in self.fields
            ],
        }

    def convert(self, value: object) -> object:
        if not isinstance(value, self.cls):
            raise expected_value(f"{self.cls.__qualname__} instance", value)
        out: dict[str, object] = {}
        try:
            for name, convert in self._converters:
                out[name] = convert(getattr(value, name))
        except Mismatch as exc:
            raise exc.inside(f"field {self._names[len(out)]!r}") from None
        return out

    def from_avro(self, value: object) -> object:
        if isinstance(value, self.cls):
            return value
        record = cast(Mapping[str, Any], value)
        return self.cls(**{name: from_avro(record[name]) for name, from_avro in self._decoders})


class ModelRecordAdapter(RecordAdapter):
    """A pydantic model: like a dataclass record, but a dict is accepted (and validated by the
    model) at send time, and decoded records are validated by the model again."""

    def convert(self, value: object) -> object:
        if isinstance(value, Mapping):
            try:
                value = self.cls.model_validate(value)
            except ValueError as exc:  # pydantic.ValidationError is a ValueError
                raise Mismatch(f"invalid {self.cls.__qualname__}: {exc}") from None
        return super().convert(value)

    def from_avro(self, value: object) -> object:
        if isinstance(value, self.cls):
            return value
        record = cast(Mapping[str, Any], value)
        return self.cls.model_validate(
            {name: from_avro(record[name]) for name, from_avro in self._decoders}
        )


def record_field(name: str, adapter: TypeAdapter, default: Any, seen: set[str]) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "type": adapter.render_schema(seen)}
    if default is not MISSING:
        out["default"] = default
    return out
