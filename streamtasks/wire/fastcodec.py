"""The Avro binary encoding of plain schemas, without fastavro's per-call setup.

``fastavro.schemaless_writer`` / ``schemaless_reader`` spend more on setting up each call than
on the small records of the hot path (a task envelope, its arguments, a result: ~8-12 us a
call on this 2-core machine, most of a send's Avro cost). :func:`compile_schema` turns a parsed
schema into a pair of plain Python functions that write and read the same bytes (Avro 1.11
specification, "Binary Encoding": zig-zag varints, length-prefixed bytes and UTF-8, a union as
its branch index then the value, arrays and maps as blocks then the end marker).

The functions are generated as Python source, one per record, and compiled with ``exec``:
straight-line code per field, every varint (lengths, ints, timestamps, union and enum
indexes) inlined, is what makes them several times faster than fastavro's call here (nested
closures per field were not faster than fastavro at all). Nothing from a schema is ever
written into the source: field names, symbols and tags reach the code as constants of its
namespace (``K0``, ``S0``...), so any schema, including one from a registry, compiles safely.

Only what is simple to get exactly right is compiled: null, boolean, int, long, float, double,
bytes, string, enum, record, array, map, and unions of ``null`` with one other type. A schema
with anything else (logical types, fixed, other unions, recursive records, nesting deeper than
Python's compiler takes in one function) is not compiled (:func:`compile_schema` returns
``None``) and the codec uses fastavro for it.

Invariants: a :class:`FastCodec` never decides anything fastavro would decide differently.
``encode`` raises (:class:`Fallback`, or any error) for any value that is not exactly of the
schema's Python type (a bool for an int, an int for a double, a tuple for an array, a missing
field, a number out of range...), and ``decode`` raises on any frame that is not exactly
well-formed (a union or enum index out of range, a negative length, a truncated or overlong
varint, bad UTF-8, a boolean byte other than 0 or 1); the codec then hands the same input to
fastavro, whose answer (a result or an error) stands. For well-formed input both write and
read the same bytes and values: the unit tests compare them on generated schemas and records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

__all__ = ["Fallback", "FastCodec", "compile_schema"]


class Fallback(Exception):
    """A value the compiled writer does not take as is: let fastavro encode it."""


class _Unsupported(Exception):
    """A schema construct this module does not compile."""


@dataclass(frozen=True)
class FastCodec:
    """``encode(record) -> body``, ``decode(data, start) -> (record, end)`` of one schema."""

    write: Callable[[bytearray, Any], None]
    read: Callable[[bytes, int], tuple[Any, int]]
    source: str  # the generated code (for tests and debugging)

    def encode(self, record: Any) -> bytes:
        out = bytearray()
        self.write(out, record)
        return bytes(out)

    def decode(self, data: bytes, start: int) -> tuple[Any, int]:
        return self.read(data, start)


_INT: Final = (-(1 << 31), (1 << 31) - 1)
_LONG: Final = (-(1 << 63), (1 << 63) - 1)


_BASE_NAMESPACE: Final[dict[str, Any]] = {
    "_FB": Fallback,
    "_pf": struct.Struct("<f").pack,
    "_pd": struct.Struct("<d").pack,
    "_uf": struct.Struct("<f").unpack_from,
    "_ud": struct.Struct("<d").unpack_from,
    "_len": len,
    "_range": range,
    "_type": type,
    "_int": int,
    "_bool": bool,
    "_float": float,
    "_bytes": bytes,
    "_str": str,
    "_list": list,
    "_dict": dict,
}
_PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)


def compile_schema(parsed: Any) -> FastCodec | None:
    """The compiled writer and reader of a schema parsed by ``fastavro.parse_schema``, or
    ``None`` when it uses something this module does not compile (fastavro then does all)."""
    gen = _Generator()
    try:
        top = gen.type_of(parsed)
        gen.entry(top)
    except (_Unsupported, KeyError, TypeError, ValueError, RecursionError):  # fastavro does it
        return None
    source = "\n".join(gen.lines) + "\n"
    namespace = dict(_BASE_NAMESPACE, **gen.constants)
    try:
        code = compile(source, "<streamtasks.wire.fastcodec>", "exec")
    except (SyntaxError, RecursionError, MemoryError):  # e.g. arrays nested ~20 deep:
        return None  # "too many statically nested blocks"; fastavro reads those
    exec(code, namespace)
    return FastCodec(namespace["write"], namespace["read"], source)


class _Generator:
    """Writes the source: a ``w<i>``/``r<i>`` function pair per record, then the entry pair."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self._records: dict[str, int] = {}  # record name -> its function index
        self._open: set[str] = set()  # records being generated (a reference: recursion)
        self._enums: dict[str, Any] = {}  # enum name -> its node
        self._tmp = 0

    def const(self, prefix: str, value: Any) -> str:
        name = f"{prefix}{len(self.constants)}"
        self.constants[name] = value
        return name

    def var(self, prefix: str) -> str:
        self._tmp += 1
        return f"{prefix}{self._tmp}"

    # -- schema nodes -> ("kind", details) -------------------------------------------------
    def named(self, node: str) -> tuple[str, Any]:
        if node in _PRIMITIVES:
            return (node, None)
        if node in self._records and node not in self._open:
            return ("record", self._records[node])
        if node in self._enums:
            return self.type_of(self._enums[node])
        raise _Unsupported(node)  # recursion, or a name never defined

    def type_of(self, node: Any) -> tuple[str, Any]:
        if isinstance(node, str):
            return self.named(node)
        if isinstance(node, list):
            if len(node) != 2 or node.count("null") != 1:
                raise _Unsupported("union")
            null_at = node.index("null")
            return ("optional", (null_at, self.type_of(node[1 - null_at])))
        if not isinstance(node, dict) or "logicalType" in node:
            raise _Unsupported(node)
        kind = node.get("type")
        if isinstance(kind, str) and kind in _PRIMITIVES:
            return (kind, None)
        if kind in ("record", "error"):
            return ("record", self.record(node))
        if kind == "enum":
            if "name" in node:
                self._enums[node["name"]] = node
            symbols = list(node["symbols"])
            return ("enum", (symbols,))
        if kind == "array":
            return ("array", self.type_of(node["items"]))
        if kind == "map":
            return ("map", self.type_of(node["values"]))
        raise _Unsupported(kind)

    def record(self, node: dict[str, Any]) -> int:
        name = node["name"]
        self._open.add(name)
        fields = [(f["name"], self.type_of(f["type"])) for f in node["fields"]]
        self._open.discard(name)
        index = len(self._records)
        self._records[name] = index
        keys = [self.const("K", field) for field, _ in fields]
        # writer
        self.lines.append(f"def w{index}(out, v):")
        self.lines.append("    if _type(v) is not _dict:")
        self.lines.append("        raise _FB")
        for key, (_, t) in zip(keys, fields, strict=True):
            x = self.var("x")
            self.lines.append(f"    {x} = v[{key}]")
            self.write(t, x, 1)
        self.lines.append("    return")
        # reader
        self.lines.append(f"def r{index}(data, pos):")
        values = []
        for _, t in fields:
            y = self.var("y")
            self.read(t, y, 1)
            values.append(y)
        pairs = ", ".join(f"{k}: {y}" for k, y in zip(keys, values, strict=True))
        self.lines.append(f"    return {{{pairs}}}, pos")
        return index

    def entry(self, top: tuple[str, Any]) -> None:
        self.lines.append("def write(out, v):")
        self.write(top, "v", 1)
        self.lines.append("def read(data, pos):")
        y = self.var("y")
        self.read(top, y, 1)
        self.lines.append(f"    return {y}, pos")

    # -- writing ---------------------------------------------------------------------------
    def emit(self, depth: int, line: str) -> None:
        self.lines.append("    " * depth + line)

    def zigzag(self, expr: str, depth: int) -> None:
        """Write the varint of the (already zig-zagged, non-negative) ``expr``, inline (a
        timestamp takes six bytes: a loop here is cheaper than a call per field)."""
        z = self.var("z")
        self.emit(depth, f"{z} = {expr}")
        self.emit(depth, f"while {z} > 127:")
        self.emit(depth + 1, f"out.append({z} & 127 | 128)")
        self.emit(depth + 1, f"{z} >>= 7")
        self.emit(depth, f"out.append({z})")

    def check(self, depth: int, condition: str) -> None:
        self.emit(depth, f"if {condition}:")
        self.emit(depth + 1, "raise _FB")

    def write(self, t: tuple[str, Any], x: str, d: int) -> None:
        kind, info = t
        if kind == "null":
            self.check(d, f"{x} is not None")
        elif kind == "boolean":
            self.check(d, f"_type({x}) is not _bool")
            self.emit(d, f"out.append(1 if {x} else 0)")
        elif kind in ("int", "long"):
            lo, hi = _INT if kind == "int" else _LONG
            self.check(d, f"_type({x}) is not _int or not {lo} <= {x} <= {hi}")
            self.zigzag(f"({x} << 1) ^ ({x} >> 63)", d)
        elif kind in ("float", "double"):
            self.check(d, f"_type({x}) is not _float")
            self.emit(d, f"out += {'_pf' if kind == 'float' else '_pd'}({x})")
        elif kind in ("bytes", "string"):
            if kind == "bytes":
                self.check(d, f"_type({x}) is not _bytes")
                raw = x
            else:
                self.check(d, f"_type({x}) is not _str")
                raw = self.var("s")
                self.emit(d, f"{raw} = {x}.encode()")
            self.zigzag(f"_len({raw}) << 1", d)
            self.emit(d, f"out += {raw}")
        elif kind == "enum":
            (symbols,) = info
            index_of = self.const("E", {s: i for i, s in enumerate(symbols)})
            i = self.var("i")
            self.emit(d, f"{i} = {index_of}.get({x}) if _type({x}) is _str else None")
            self.check(d, f"{i} is None")
            self.zigzag(f"{i} << 1", d)
        elif kind == "record":
            self.emit(d, f"w{info}(out, {x})")
        elif kind == "optional":
            null_at, some = info
            null_tag, some_tag = (0, 2) if null_at == 0 else (2, 0)
            self.emit(d, f"if {x} is None:")
            self.emit(d + 1, f"out.append({null_tag})")
            self.emit(d, "else:")
            self.emit(d + 1, f"out.append({some_tag})")
            self.write(some, x, d + 1)
        elif kind == "array":
            self.check(d, f"_type({x}) is not _list")
            self.emit(d, f"if {x}:")
            self.zigzag(f"_len({x}) << 1", d + 1)
            item = self.var("x")
            self.emit(d + 1, f"for {item} in {x}:")
            self.write(info, item, d + 2)
            self.emit(d, "out.append(0)")
        elif kind == "map":
            self.check(d, f"_type({x}) is not _dict")
            self.emit(d, f"if {x}:")
            self.zigzag(f"_len({x}) << 1", d + 1)
            key, value = self.var("x"), self.var("x")
            self.emit(d + 1, f"for {key}, {value} in {x}.items():")
            self.write(("string", None), key, d + 2)
            self.write(info, value, d + 2)
            self.emit(d, "out.append(0)")
        else:  # pragma: no cover - type_of returns only the kinds above
            raise _Unsupported(kind)

    # -- reading ---------------------------------------------------------------------------
    def varint(self, target: str, d: int) -> None:
        """``target`` = the long at ``pos`` (zig-zag decoded), inline: at most ten bytes,
        within the long range, else ValueError."""
        self.emit(d, "b = data[pos]")
        self.emit(d, "pos += 1")
        self.emit(d, "if b < 128:")
        self.emit(d + 1, f"{target} = (b >> 1) ^ -(b & 1)")
        self.emit(d, "else:")
        self.emit(d + 1, "vn = b & 127")
        self.emit(d + 1, "vs = 7")
        self.emit(d + 1, "while True:")
        self.emit(d + 2, "b = data[pos]")
        self.emit(d + 2, "pos += 1")
        self.emit(d + 2, "vn |= (b & 127) << vs")
        self.emit(d + 2, "if b < 128:")
        self.emit(d + 3, "break")
        self.emit(d + 2, "vs += 7")
        self.emit(d + 2, "if vs > 63:")
        self.emit(d + 3, "raise ValueError")
        self.emit(d + 1, f"{target} = (vn >> 1) ^ -(vn & 1)")
        self.fail(d + 1, f"not {_LONG[0]} <= {target} <= {_LONG[1]}")

    def fail(self, d: int, condition: str) -> None:
        self.emit(d, f"if {condition}:")
        self.emit(d + 1, "raise ValueError")

    def read(self, t: tuple[str, Any], y: str, d: int) -> None:
        kind, info = t
        if kind == "null":
            self.emit(d, f"{y} = None")
        elif kind == "boolean":
            self.emit(d, "b = data[pos]")
            self.fail(d, "b > 1")
            self.emit(d, f"{y} = b == 1")
            self.emit(d, "pos += 1")
        elif kind in ("int", "long"):
            self.varint(y, d)
            if kind == "int":
                lo, hi = _INT
                self.fail(d, f"not {lo} <= {y} <= {hi}")
        elif kind in ("float", "double"):
            size, unpack = (4, "_uf") if kind == "float" else (8, "_ud")
            self.emit(d, f"{y} = {unpack}(data, pos)[0]")
            self.emit(d, f"pos += {size}")
        elif kind in ("bytes", "string"):
            n = self.var("n")
            self.varint(n, d)
            self.emit(d, f"e = pos + {n}")
            self.fail(d, f"{n} < 0 or e > _len(data)")
            self.emit(d, f"{y} = data[pos:e]" + (".decode()" if kind == "string" else ""))
            self.emit(d, "pos = e")
        elif kind == "enum":
            (symbols,) = info
            table = self.const("S", tuple(symbols))
            i = self.var("i")
            self.varint(i, d)
            self.fail(d, f"not 0 <= {i} < {len(symbols)}")
            self.emit(d, f"{y} = {table}[{i}]")
        elif kind == "record":
            self.emit(d, f"{y}, pos = r{info}(data, pos)")
        elif kind == "optional":
            # the branch index is 0 or 1, one byte as written (zig-zag: 0x00 or 0x02): any
            # other byte, an over-long varint of the same number included, is fastavro's
            null_at, some = info
            self.emit(d, "b = data[pos]")
            self.emit(d, "pos += 1")
            self.emit(d, f"if b == {2 * null_at}:")
            self.emit(d + 1, f"{y} = None")
            self.emit(d, f"elif b == {2 * (1 - null_at)}:")
            self.read(some, y, d + 1)
            self.emit(d, "else:")
            self.emit(d + 1, "raise ValueError")
        elif kind in ("array", "map"):
            count, item = self.var("c"), self.var("y")
            self.emit(d, f"{y} = {'[]' if kind == 'array' else '{}'}")
            self.emit(d, "while True:")
            self.varint(count, d + 1)
            self.emit(d + 1, f"if {count} == 0:")
            self.emit(d + 2, "break")
            self.emit(d + 1, f"if {count} < 0:")  # a block that also gives its size in bytes
            self.emit(d + 2, f"{count} = -{count}")
            self.varint("e", d + 2)
            self.emit(d + 1, f"for _ in _range({count}):")
            if kind == "array":
                self.read(info, item, d + 2)
                self.emit(d + 2, f"{y}.append({item})")
            else:
                key = self.var("y")
                self.read(("string", None), key, d + 2)
                self.read(info, item, d + 2)
                self.emit(d + 2, f"{y}[{key}] = {item}")
        else:  # pragma: no cover
            raise _Unsupported(kind)
