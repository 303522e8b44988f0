"""The Avro view of a task function: its argument record (:class:`Signature`) and its result.

:func:`signature_of` derives the argument record of a task function (one field per
parameter) and :func:`return_adapter` its result record (one field, ``value``).

Invariants: both are derived once, when a task is declared (:class:`SchemaError` then); no
argument that does not fit gets past :meth:`Signature.to_record` (:class:`ArgumentError`,
naming the parameter); binding follows Python's own rules (defaults, keyword-only,
positional-only), on a fast path for the common calls.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from streamtasks.errors import ArgumentError, SchemaError
from streamtasks.wire.schema.adapters import (
    MISSING,
    SUPPORTED_TYPES,
    TASKS_NAMESPACE,
    TYPES_NAMESPACE,
    Mismatch,
    NullAdapter,
    TypeAdapter,
    avro_name,
)
from streamtasks.wire.schema.composites import (
    record_field,
)
from streamtasks.wire.schema.derive import AdapterBuilder, check_field_name, with_default
from streamtasks.wire.schema.plain import from_plain

__all__ = ["Signature", "return_adapter", "signature_of"]


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
    _defaults: tuple[Any, ...] = field(repr=False, compare=False)  # MISSING: required
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
        except Mismatch as exc:
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
            elif defaults[index] is MISSING:
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
            except Mismatch as exc:
                raise ArgumentError(exc.message(path)) from None
        return record

    def complete(self, partial: Mapping[str, Any], first: object) -> dict[str, Any]:
        """The full argument record: ``first`` (a Python value) for the first parameter."""
        try:
            head = self._converters[0](first)
        except Mismatch as exc:
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
                record[name] = from_plain(adapter, value)
            except Mismatch as exc:
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


def signature_of(func: Callable[..., Any], *, task_name: str) -> Signature:
    """Derive the argument record of ``func``. Raises :class:`SchemaError` if it cannot be."""
    where = f"task {task_name!r}"
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{where}: cannot read the signature of {func!r}: {exc}") from exc
    hints = _hints_of(func, where)
    builder = AdapterBuilder(TYPES_NAMESPACE)
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
        check_field_name(param.name, param_where)
        adapter = builder.build(hints[param.name], param_where)
        default = MISSING if param.default is param.empty else param.default
        adapter, avro_default = with_default(adapter, default, param_where)
        fields.append(record_field(param.name, adapter, avro_default, seen))
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
        tails.append(None if any(d is MISSING for d in rest) else rest)
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
    hint = hints.get("return", MISSING)
    adapter: TypeAdapter
    if hint is MISSING:
        adapter = NullAdapter(
            note="the task has no return annotation; annotate it (e.g. -> int) to return a value"
        )
    else:
        adapter = AdapterBuilder(TYPES_NAMESPACE).build(hint, f"{where} return type")
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
