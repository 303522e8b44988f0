"""The compiled Avro writer and reader are fastavro's, byte for byte and value for value, and
anything they do not take as is goes to fastavro (no broker)."""

from __future__ import annotations

import io
import itertools
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamtasks.errors import DecodeError, SchemaError
from streamtasks.wire.codec import Codec, load_builtin_schema
from streamtasks.wire.fastcodec import FastCodec, compile_schema

_PRIMITIVES = ["null", "boolean", "int", "long", "float", "double", "bytes", "string"]
_names = itertools.count()


def _fastavro_bytes(parsed: Any, value: Any) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, value)
    return buf.getvalue()


def _fastavro_read(parsed: Any, data: bytes) -> Any:
    return fastavro.schemaless_reader(io.BytesIO(data), parsed, None)


# -- generated schemas and values ---------------------------------------------------------
_shapes = st.recursive(
    st.sampled_from(_PRIMITIVES) | st.just("enum"),
    lambda inner: st.one_of(
        st.tuples(st.just("array"), inner),
        st.tuples(st.just("map"), inner),
        st.tuples(st.just("optional"), inner, st.booleans()),
        st.tuples(st.just("record"), st.lists(inner, min_size=0, max_size=5)),
    ),
    max_leaves=12,
)


def _schema(shape: Any) -> Any:
    """A schema (JSON) of the shape; names are unique, some collide with generated code's."""
    if shape == "enum":
        return {"type": "enum", "name": f"E{next(_names)}", "symbols": ["A", "B", "pos", "out"]}
    if isinstance(shape, str):
        return shape
    kind = shape[0]
    if kind == "array":
        return {"type": "array", "items": _schema(shape[1])}
    if kind == "map":
        return {"type": "map", "values": _schema(shape[1])}
    if kind == "optional":
        inner = _schema(shape[1])
        if inner == "null" or isinstance(inner, list):
            return inner
        return ["null", inner] if shape[2] else [inner, "null"]
    fields = [
        {"name": name, "type": _schema(s)}
        for name, s in zip(["pos", "data", "out", "v", "b", "e", "K0"], shape[1], strict=False)
    ]
    return {"type": "record", "name": f"R{next(_names)}", "fields": fields}


def _values(schema: Any) -> st.SearchStrategy[Any]:
    if isinstance(schema, list):
        inner = next(s for s in schema if s != "null")
        return st.none() | _values(inner)
    if isinstance(schema, str):
        return {
            "null": st.none(),
            "boolean": st.booleans(),
            "int": st.integers(-(2**31), 2**31 - 1),
            "long": st.integers(-(2**63), 2**63 - 1),
            "float": st.floats(width=32, allow_nan=False),
            "double": st.floats(allow_nan=False),
            "bytes": st.binary(max_size=200),
            "string": st.text(max_size=200),
        }[schema]
    kind = schema["type"]
    if kind == "enum":
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(_values(schema["items"]), max_size=4)
    if kind == "map":
        return st.dictionaries(st.text(max_size=20), _values(schema["values"]), max_size=3)
    return st.fixed_dictionaries({f["name"]: _values(f["type"]) for f in schema["fields"]})


def _drawn(data: st.DataObject) -> tuple[Any, FastCodec, Any]:
    """A generated schema (parsed), its compiled codec, and a value of it."""
    schema = _schema(data.draw(_shapes))
    parsed = fastavro.parse_schema(schema)
    fast = compile_schema(parsed)
    assert fast is not None, schema
    return parsed, fast, data.draw(_values(schema))


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_generated_schemas_write_and_read_what_fastavro_does(data: st.DataObject) -> None:
    # Given a schema of the supported kinds (nested records, unions with null either side,
    # arrays, maps, enums) and a value of it
    parsed, fast, value = _drawn(data)
    # Then the compiled writer writes fastavro's bytes, and the reader reads them as it does
    expected = _fastavro_bytes(parsed, value)
    assert fast.encode(value) == expected
    decoded, end = fast.decode(expected, 0)
    assert end == len(expected)
    assert decoded == _fastavro_read(parsed, expected)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_hostile_frames_read_as_fastavro_reads_them_or_fail(data: st.DataObject) -> None:
    # Given a valid frame of a generated schema, cut short, corrupted or followed by junk
    parsed, fast, value = _drawn(data)
    frame = bytearray(_fastavro_bytes(parsed, value))
    how = data.draw(st.sampled_from(["cut", "flip", "junk", "random"]))
    if how == "cut" and frame:
        del frame[data.draw(st.integers(0, len(frame) - 1)) :]
    elif how == "flip" and frame:
        frame[data.draw(st.integers(0, len(frame) - 1))] = data.draw(st.integers(0, 255))
    elif how == "junk":
        frame += data.draw(st.binary(min_size=1, max_size=8))
    elif how == "random":
        frame = bytearray(data.draw(st.binary(max_size=40)))
    raw = bytes(frame)
    # Then the compiled reader either fails or reads exactly what fastavro reads
    try:
        decoded, end = fast.decode(raw, 0)
    except Exception:
        return  # the codec then asks fastavro
    buf = io.BytesIO(raw)
    assert decoded == fastavro.schemaless_reader(buf, parsed, None)
    assert end == buf.tell()


# -- through the codec ----------------------------------------------------------------------
def _frames_equal_fastavro(codec: Codec, known: Any, record: Any) -> None:
    try:
        expected = known.header + _fastavro_bytes(known.parsed, record)
    except Exception:
        with pytest.raises(SchemaError):
            codec.encode(known, record)
        return
    assert codec.encode(known, record) == expected


def test_values_not_exactly_of_the_schema_type_are_written_by_fastavro() -> None:
    codec = Codec()
    known = codec.register(
        {
            "type": "record",
            "name": "Loose",
            "fields": [
                {"name": "n", "type": "long"},
                {"name": "x", "type": "double"},
                {"name": "items", "type": {"type": "array", "items": "int"}},
                {"name": "opt", "type": ["null", "string"], "default": None},
            ],
        }
    )
    assert known.fast is not None
    good = {"n": 1, "x": 1.5, "items": [1, 2], "opt": None}
    assert codec.encode(known, good) == known.header + _fastavro_bytes(known.parsed, good)
    for loose in (
        {**good, "n": True},  # a bool for a long
        {**good, "x": 2},  # an int for a double
        {**good, "items": (1, 2)},  # a tuple for an array
        {"n": 1, "x": 1.5, "items": []},  # a field left to its default
        {**good, "n": 2**63},  # out of range: fastavro's error
        {**good, "opt": 5},  # not a string
        {**good, "opt": "\ud800"},  # a lone surrogate
        "not a record",
    ):
        _frames_equal_fastavro(codec, known, loose)


def _result(**fields: Any) -> dict[str, Any]:
    """A result record (result.avsc) as the codec takes it."""
    base: dict[str, Any] = {
        "task_id": "t1",
        "task": "x",
        "status": "SUCCESS",
        "attempts": 1,
        "worker_id": None,
        "created_at": 1,
        "started_at": None,
        "finished_at": 3,
        "value": None,
        "error": None,
    }
    return {**base, **fields}


def test_a_corrupt_frame_is_fastavros_decode_error_through_the_codec() -> None:
    codec = Codec()
    known = codec.register(load_builtin_schema("result.avsc"))
    record = _result(value=b"\x01")
    frame = codec.encode(known, record)
    assert codec.decode(frame, expect=known)[1] == record
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(frame + b"\x00", expect=known)
    with pytest.raises(DecodeError, match="corrupt"):
        codec.decode(frame[:-3], expect=known)
    bad_enum = bytearray(frame)
    bad_enum[len(known.header) + 5] = 0x7E  # status: index 63 of 8 symbols
    with pytest.raises(DecodeError, match="corrupt"):
        codec.decode(bytes(bad_enum), expect=known)


def test_an_over_long_union_index_is_read_as_fastavro_reads_it() -> None:
    # Given a result frame whose first union index (worker_id: null) is the over-long varint
    # 0x80 0x00 of 0, which no writer makes but fastavro reads
    codec = Codec()
    known = codec.register(load_builtin_schema("result.avsc"))
    record = _result(value=None)
    frame = codec.encode(known, record)
    at = len(known.header) + 7  # "t1", "x", SUCCESS, 1: 3 + 2 + 1 + 1 bytes
    assert frame[at] == 0
    odd = frame[:at] + b"\x80\x00" + frame[at + 1 :]
    # Then the compiled reader refuses it, and the codec answers as fastavro does
    assert known.fast is not None
    with pytest.raises(ValueError):
        known.fast.decode(odd, len(known.header))
    body = io.BytesIO(odd[len(known.header) :])
    decoded = codec.decode(odd, expect=known)[1]
    assert decoded == fastavro.schemaless_reader(body, known.parsed, None) == record


@pytest.mark.parametrize(
    "filename",
    [
        "envelope.avsc",
        "envelope.v1.avsc",
        "result.avsc",
        "event.avsc",
        "event_batch.avsc",
        "heartbeat.avsc",
        "chord_member.avsc",
        "chord_join.avsc",
        "signature.avsc",
        "scheduler_state.avsc",
    ],
)
def test_every_shipped_contract_compiles(filename: str) -> None:
    parsed = fastavro.parse_schema(load_builtin_schema(filename))
    assert compile_schema(parsed) is not None


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "long", "logicalType": "timestamp-millis"},
        {"type": "fixed", "name": "F", "size": 4},
        ["null", "string", "long"],
        ["string", "long"],
        {
            "type": "record",
            "name": "Node",
            "fields": [{"name": "next", "type": ["null", "Node"]}],
        },
        {
            "type": "record",
            "name": "WithDate",
            "fields": [{"name": "d", "type": {"type": "int", "logicalType": "date"}}],
        },
    ],
)
def test_what_is_not_compiled_is_left_to_fastavro(schema: Any) -> None:
    assert compile_schema(fastavro.parse_schema(schema)) is None
    codec = Codec()
    known = codec.register(schema)
    assert known.fast is None


def test_nesting_too_deep_for_the_compiler_is_left_to_fastavro() -> None:
    # arrays of arrays 30 deep: Python refuses so many nested blocks in one function
    schema: Any = "long"
    for _ in range(30):
        schema = {"type": "array", "items": schema}
    codec = Codec()
    known = codec.register(schema)
    assert known.fast is None
    value: Any = [7]
    for _ in range(29):
        value = [value]
    frame = codec.encode(known, value)
    assert codec.decode(frame, expect=known)[1] == value


def test_a_named_type_used_twice_is_compiled_once_and_read_alike() -> None:
    schema = {
        "type": "record",
        "name": "Pair",
        "fields": [
            {
                "name": "a",
                "type": {"type": "record", "name": "P", "fields": [{"name": "x", "type": "int"}]},
            },
            {"name": "b", "type": ["null", "P"]},
            {"name": "c", "type": {"type": "enum", "name": "Color", "symbols": ["R", "G"]}},
            {"name": "d", "type": {"type": "array", "items": "Color"}},
        ],
    }
    parsed = fastavro.parse_schema(schema)
    fast = compile_schema(parsed)
    assert fast is not None
    value = {"a": {"x": 1}, "b": {"x": -70000}, "c": "G", "d": ["R", "G", "G"]}
    frame = _fastavro_bytes(parsed, value)
    assert fast.encode(value) == frame
    assert fast.decode(frame, 0) == (value, len(frame))
