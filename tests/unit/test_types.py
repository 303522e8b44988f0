"""Avro schemas derived from type hints, and values converted both ways
(streamtasks.wire.schema: adapters, composites, derive, signature).

Annotations in this module are strings (``from __future__ import annotations``), so every test
also exercises the resolution of postponed annotations.
"""

from __future__ import annotations

import dataclasses
import enum
import io
import typing
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any, NewType, Optional

import fastavro
import pytest

from streamtasks.errors import ArgumentError, SchemaError
from streamtasks.wire.schema.adapters import (
    SUPPORTED_TYPES,
    TASKS_NAMESPACE,
    TYPES_NAMESPACE,
    TypeAdapter,
    avro_name,
)
from streamtasks.wire.schema.derive import adapter_for
from streamtasks.wire.schema.signature import Signature, return_adapter, signature_of

# -- types used by the tests ----------------------------------------------------------------


class Color(enum.Enum):
    RED = "r"
    GREEN = "g"
    BLUE = "b"


class Size(enum.IntEnum):
    SMALL = 1
    LARGE = 2


class Perm(enum.Flag):
    READ = 1
    WRITE = 2


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


@dataclasses.dataclass
class Pixel:
    at: Point
    color: Color
    alpha: float | None = None


@dataclasses.dataclass(frozen=True)
class Image:
    name: str
    pixels: list[Pixel]
    tags: dict[str, list[int]]
    origin: Point | None = None
    created: datetime | None = None


@dataclasses.dataclass
class Node:
    value: int
    children: list[Node]


@dataclasses.dataclass
class WithDerived:
    a: int
    doubled: int = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        self.doubled = self.a * 2


@dataclasses.dataclass
class Broken:
    thing: set[int]


class Plain:
    pass


class A:
    @dataclasses.dataclass
    class B:
        n: int


@dataclasses.dataclass
class A_B:  # its Avro name clashes with the one of A.B, on purpose
    n: int


UserId = NewType("UserId", int)

AWARE = datetime(2024, 5, 17, 13, 45, 30, 123456, tzinfo=timezone(timedelta(hours=5, minutes=30)))
SAMPLE_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")


# -- helpers --------------------------------------------------------------------------------


def task_with(hint: object, default: object = dataclasses.MISSING) -> Callable[..., None]:
    """A function with one parameter ``value`` annotated ``hint`` (and ``default`` if given)."""

    def func(value: object) -> None:
        return None

    if default is not dataclasses.MISSING:
        func.__defaults__ = (default,)
    func.__annotations__ = {"value": hint}
    return func


def wire_round_trip(sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """to_record -> fastavro write -> fastavro read -> from_record."""
    record = sig.to_record(args, kwargs)
    parsed = fastavro.parse_schema(sig.record_schema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, record)
    buf.seek(0)
    back = read(buf, parsed)
    assert buf.tell() == len(buf.getvalue())
    return sig.from_record(back)


def read(buf: io.BytesIO, parsed: Any) -> Any:
    return fastavro.schemaless_reader(buf, parsed, None)


def round_trip_value(hint: object, value: object) -> object:
    sig = signature_of(task_with(hint), task_name="t")
    args, kwargs = wire_round_trip(sig, (value,), {})
    assert args == ()
    return kwargs["value"]


def field_type(sig: Signature, name: str) -> Any:
    (found,) = [f for f in sig.record_schema["fields"] if f["name"] == name]
    return found["type"]


def field_of(sig: Signature, name: str) -> dict[str, Any]:
    (found,) = [f for f in sig.record_schema["fields"] if f["name"] == name]
    return typing.cast(dict[str, Any], found)


def enum_name(cls: type) -> str:
    return avro_name(f"{cls.__module__}.{cls.__qualname__}")


# -- schemas --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "expected"),
    [
        (str, "string"),
        (int, "long"),
        (float, "double"),
        (bool, "boolean"),
        (bytes, "bytes"),
        (None, "null"),
        (type(None), "null"),
        (Optional[int], ["null", "long"]),  # noqa: UP045 - the typing spelling is supported too
        (str | None, ["null", "string"]),
        (list[int], {"type": "array", "items": "long"}),
        (typing.List[str], {"type": "array", "items": "string"}),  # noqa: UP006
        (list[list[float]], {"type": "array", "items": {"type": "array", "items": "double"}}),
        (dict[str, int], {"type": "map", "values": "long"}),
        (
            typing.Dict[str, list[int]],  # noqa: UP006
            {"type": "map", "values": {"type": "array", "items": "long"}},
        ),
        (list[int] | None, ["null", {"type": "array", "items": "long"}]),
        (datetime, {"type": "long", "logicalType": "timestamp-micros"}),
        (date, {"type": "int", "logicalType": "date"}),
        (uuid.UUID, {"type": "string", "logicalType": "uuid"}),
        (UserId, "long"),
    ],
    ids=repr,
)
def test_schema_of_each_supported_hint(hint: object, expected: object) -> None:
    # Given a parameter annotated with a supported hint
    func = task_with(hint)

    # When its signature is derived
    sig = signature_of(func, task_name="t")

    # Then the field has the expected Avro type and fastavro accepts the record schema
    assert field_type(sig, "value") == expected
    assert adapter_for(hint, namespace="ns", where="w").schema == expected
    fastavro.parse_schema(sig.record_schema)


def test_signature_record_schema_shape() -> None:
    # Given a task function with two parameters
    def resize(path: str, width: int) -> None: ...

    # When its signature is derived
    sig = signature_of(resize, task_name="images.resize")

    # Then it is an Avro record named after the task in the tasks namespace
    assert sig.record_schema == {
        "type": "record",
        "name": "images_resize_args",
        "namespace": TASKS_NAMESPACE,
        "fields": [{"name": "path", "type": "string"}, {"name": "width", "type": "long"}],
    }
    assert sig.parameters == ("path", "width")


@pytest.mark.parametrize(
    ("task_name", "record_name"),
    [
        ("resize", "resize_args"),
        ("app.tasks:resize-v2", "app_tasks_resize_v2_args"),
        ("9lives", "_9lives_args"),
        ("héllo wörld", "h_llo_w_rld_args"),
    ],
)
def test_record_name_is_sanitized_task_name(task_name: str, record_name: str) -> None:
    # Given a task name with characters Avro names do not allow
    def func(x: int) -> int:
        return x

    # When the argument and result schemas are derived
    sig = signature_of(func, task_name=task_name)
    result_schema, _ = return_adapter(func, task_name=task_name)

    # Then their names are valid Avro names
    assert sig.record_schema["name"] == record_name
    assert result_schema["name"] == record_name.removesuffix("_args") + "_result"
    fastavro.parse_schema(sig.record_schema)
    fastavro.parse_schema(result_schema)


def test_enum_schema_is_named_after_module_and_qualname() -> None:
    # Given an Enum hint
    # When its adapter is derived
    adapter = adapter_for(Color, namespace="my.ns", where="here")

    # Then it is an Avro enum of member names, named from module and qualname, in the namespace
    assert adapter.schema == {
        "type": "enum",
        "name": enum_name(Color),
        "namespace": "my.ns",
        "symbols": ["RED", "GREEN", "BLUE"],
    }
    assert enum_name(Color).endswith("test_types_Color")
    assert "." not in enum_name(Color)


def test_dataclass_schema_has_its_fields_and_nested_types() -> None:
    # Given a dataclass with a nested dataclass, an Enum and an optional field with a default
    # When its adapter is derived
    adapter = adapter_for(Pixel, namespace="ns", where="here")

    # Then it is a record with one field per dataclass field, nested types defined inline
    assert adapter.schema == {
        "type": "record",
        "name": enum_name(Pixel),
        "namespace": "ns",
        "fields": [
            {
                "name": "at",
                "type": {
                    "type": "record",
                    "name": enum_name(Point),
                    "namespace": "ns",
                    "fields": [{"name": "x", "type": "long"}, {"name": "y", "type": "long"}],
                },
            },
            {
                "name": "color",
                "type": {
                    "type": "enum",
                    "name": enum_name(Color),
                    "namespace": "ns",
                    "symbols": ["RED", "GREEN", "BLUE"],
                },
            },
            {"name": "alpha", "type": ["null", "double"], "default": None},
        ],
    }
    fastavro.parse_schema(adapter.schema)


def test_signature_uses_types_namespace_for_user_types() -> None:
    # Given a task taking a dataclass
    def draw(p: Point) -> None: ...

    # When its signature is derived
    sig = signature_of(draw, task_name="draw")

    # Then the dataclass record lives in the types namespace
    assert field_type(sig, "p")["namespace"] == TYPES_NAMESPACE


def test_named_type_used_twice_is_defined_once_then_referenced() -> None:
    # Given a task whose dataclass and Enum appear more than once
    def line(a: Point, b: Point | None, colors: list[Color], pixel: Pixel) -> None: ...

    # When its signature is derived
    sig = signature_of(line, task_name="line")

    # Then each named type is defined in full at its first use and referenced by full name after
    point_ref = f"{TYPES_NAMESPACE}.{enum_name(Point)}"
    color_ref = f"{TYPES_NAMESPACE}.{enum_name(Color)}"
    assert field_type(sig, "a")["type"] == "record"
    assert field_type(sig, "b") == ["null", point_ref]
    assert field_type(sig, "colors") == {
        "type": "array",
        "items": {
            "type": "enum",
            "name": enum_name(Color),
            "namespace": TYPES_NAMESPACE,
            "symbols": ["RED", "GREEN", "BLUE"],
        },
    }
    pixel_fields = {f["name"]: f["type"] for f in field_type(sig, "pixel")["fields"]}
    assert pixel_fields["at"] == point_ref
    assert pixel_fields["color"] == color_ref
    # And fastavro (which rejects redefinitions) accepts it, and values round-trip
    fastavro.parse_schema(sig.record_schema)
    args = (Point(1, 2), Point(3, 4), [Color.BLUE], Pixel(Point(5, 6), Color.RED, 0.5))
    _, kwargs = wire_round_trip(sig, args, {})
    assert kwargs == {"a": args[0], "b": args[1], "colors": args[2], "pixel": args[3]}


def test_named_type_in_return_schema_is_defined_once() -> None:
    # Given a task returning a structure that mentions Point twice
    def corners() -> dict[str, list[Pixel | None]]:
        return {}

    # When its result schema is derived
    schema, adapter = return_adapter(corners, task_name="corners")

    # Then fastavro accepts it and the value round-trips
    parsed = fastavro.parse_schema(schema)
    value = {"top": [Pixel(Point(0, 0), Color.GREEN), None], "bottom": []}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, {"value": adapter.to_avro(value, "result")})
    buf.seek(0)
    assert adapter.from_avro(read(buf, parsed)["value"]) == value


def test_dataclass_init_false_fields_are_recomputed_not_transported() -> None:
    # Given a dataclass with a field computed in __post_init__
    # When it is converted and back
    result = round_trip_value(WithDerived, WithDerived(a=21))

    # Then only the init field is in the schema and the derived one is recomputed
    assert [
        f["name"] for f in adapter_for(WithDerived, namespace="n", where="w").schema["fields"]
    ] == ["a"]
    assert result == WithDerived(a=21)
    assert isinstance(result, WithDerived)
    assert result.doubled == 42


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "value"),
    [
        (str, "héllo ✓"),
        (str, ""),
        (int, 0),
        (int, -(2**63)),
        (int, 2**63 - 1),
        (float, 1.5),
        (float, -0.0),
        (bool, True),
        (bool, False),
        (bytes, b"\x00\xff raw"),
        (None, None),
        (int | None, None),
        (int | None, 7),
        (list[int], [1, 2, 3]),
        (list[int], []),
        (list[list[str]], [["a"], [], ["b", "c"]]),
        (dict[str, int], {"a": 1, "": 2}),
        (dict[str, list[int]], {"evens": [2, 4], "none": []}),
        (datetime, datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)),
        (datetime, datetime(1950, 6, 1, 12, 0, tzinfo=UTC)),
        (date, date(2024, 2, 29)),
        (date, date(1901, 1, 1)),
        (uuid.UUID, SAMPLE_UUID),
        (uuid.UUID | None, SAMPLE_UUID),
        (Color, Color.GREEN),
        (Size, Size.LARGE),
        (Point, Point(-1, 2)),
        (Point | None, None),
        (list[Point], [Point(1, 2), Point(3, 4)]),
        (dict[str, Color], {"sky": Color.BLUE}),
        (UserId, UserId(42)),
    ],
    ids=repr,
)
def test_value_round_trips_through_avro(hint: object, value: object) -> None:
    # Given a parameter of a supported type and a value of it
    # When the value goes to_record -> fastavro bytes -> from_record
    result = round_trip_value(hint, value)

    # Then it comes back equal, with the same type
    assert result == value
    assert type(result) is type(value)


def test_nested_dataclass_round_trips() -> None:
    # Given a frozen dataclass holding a list of dataclasses with Enums, optionals, a map
    # of lists and an aware datetime
    image = Image(
        name="cat",
        pixels=[Pixel(Point(0, 0), Color.RED), Pixel(Point(1, 0), Color.BLUE, alpha=0.25)],
        tags={"sizes": [1, 2, 3], "empty": []},
        origin=Point(10, 20),
        created=AWARE,
    )

    # When it round-trips as a task argument
    result = round_trip_value(Image, image)

    # Then the same value comes back, dataclasses and Enum members included
    assert result == image
    assert isinstance(result, Image)
    assert isinstance(result.pixels[1], Pixel)
    assert result.pixels[1].color is Color.BLUE


def test_aware_datetime_in_other_timezone_round_trips_as_the_same_instant() -> None:
    # Given an aware datetime at +05:30
    # When it round-trips
    result = round_trip_value(datetime, AWARE)

    # Then it is the same instant, to the microsecond, and comes back in UTC
    assert isinstance(result, datetime)
    assert result == AWARE
    assert result.utcoffset() == timedelta(0)
    assert result.microsecond == 123456


def test_timestamp_is_microseconds_since_epoch() -> None:
    # Given a datetime one second and one microsecond after the epoch, at +02:00
    moment = datetime(1970, 1, 1, 2, 0, 1, 1, tzinfo=timezone(timedelta(hours=2)))

    # When converted
    adapter = adapter_for(datetime, namespace="n", where="w")

    # Then it is the integer count of microseconds, and back
    assert adapter.to_avro(moment, "p") == 1_000_001
    assert adapter.from_avro(1_000_001) == moment
    assert adapter.from_avro(-1) == datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)


def test_date_is_days_since_epoch() -> None:
    adapter = adapter_for(date, namespace="n", where="w")
    assert adapter.to_avro(date(1970, 1, 11), "p") == 10
    assert adapter.to_avro(date(1969, 12, 31), "p") == -1
    assert adapter.from_avro(10) == date(1970, 1, 11)


def test_logical_types_do_not_depend_on_fastavro_conversion() -> None:
    # Given a signature with logical types
    def log(at: datetime, day: date, ident: uuid.UUID) -> None: ...

    sig = signature_of(log, task_name="log")

    # When the record is converted without fastavro in between
    record = sig.to_record((AWARE, date(2024, 3, 1), SAMPLE_UUID), {})

    # Then it holds plain Avro values, and they convert back by themselves
    assert record == {
        "at": (AWARE - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1),
        "day": (date(2024, 3, 1) - date(1970, 1, 1)).days,
        "ident": str(SAMPLE_UUID),
    }
    assert sig.from_record(record) == (
        (),
        {"at": AWARE, "day": date(2024, 3, 1), "ident": SAMPLE_UUID},
    )


@pytest.mark.parametrize(
    ("hint", "value", "expected"),
    [
        (float, 3, 3.0),
        (bytes, bytearray(b"ab"), b"ab"),
        (bytes, memoryview(b"cd"), b"cd"),
        (list[int], (1, 2), [1, 2]),
        (int, Size.SMALL, 1),
    ],
    ids=repr,
)
def test_accepted_values_are_normalized(hint: object, value: object, expected: object) -> None:
    # Given a value of an accepted, not exact, type
    # When it round-trips
    result = round_trip_value(hint, value)

    # Then it comes back as the declared type
    assert result == expected
    assert type(result) is type(expected)


def test_positional_only_parameters_come_back_as_args() -> None:
    # Given a function with positional-only, normal and keyword-only parameters
    def func(a: int, /, b: str, *, c: bool = False) -> None: ...

    sig = signature_of(func, task_name="f")

    # When a call round-trips
    result = wire_round_trip(sig, (1, "x"), {"c": True})

    # Then positional-only arguments are positional, the rest keywords, and the call works
    assert result == ((1,), {"b": "x", "c": True})
    args, kwargs = result
    func(*args, **kwargs)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((1, "x", 2.5), {}), ((1,), {"b": "x", "c": 2.5}), ((), {"c": 2.5, "b": "x", "a": 1})],
)
def test_positional_and_keyword_calls_give_the_same_record(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    def func(a: int, b: str, c: float = 0.0) -> None: ...

    sig = signature_of(func, task_name="f")
    assert sig.to_record(args, kwargs) == {"a": 1, "b": "x", "c": 2.5}


def test_return_value_round_trips() -> None:
    # Given a task returning a list of dataclasses
    def points() -> list[Point]:
        return []

    # When its result schema is derived and a value goes through fastavro
    schema, adapter = return_adapter(points, task_name="geo.points")
    assert schema == {
        "type": "record",
        "name": "geo_points_result",
        "namespace": TASKS_NAMESPACE,
        "fields": [{"name": "value", "type": {"type": "array", "items": adapter.schema["items"]}}],
    }
    parsed = fastavro.parse_schema(schema)
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, parsed, {"value": adapter.to_avro([Point(1, 1)], "ret")})
    buf.seek(0)

    # Then the same value comes back
    assert adapter.from_avro(read(buf, parsed)["value"]) == [Point(1, 1)]


@pytest.mark.parametrize("annotated", [True, False])
def test_return_type_none_or_missing_is_null(annotated: bool) -> None:
    # Given a task annotated -> None, or not annotated at all
    def job(x: int) -> None: ...

    if not annotated:
        del job.__annotations__["return"]

    # When its result schema is derived
    schema, adapter = return_adapter(job, task_name="job")

    # Then the value is "null" and None converts
    assert schema["fields"] == [{"name": "value", "type": "null"}]
    assert adapter.to_avro(None, "ret") is None
    fastavro.parse_schema(schema)


def test_value_returned_without_return_annotation_says_to_annotate() -> None:
    def job(x: int):  # type: ignore[no-untyped-def]
        return x

    _, adapter = return_adapter(job, task_name="job")
    with pytest.raises(ArgumentError) as info:
        adapter.to_avro(3, "task 'job' return value")
    assert str(info.value) == (
        "task 'job' return value: expected None, got int (3) (the task has no return annotation; "
        "annotate it (e.g. -> int) to return a value)"
    )


def test_adapters_are_type_adapters() -> None:
    assert isinstance(adapter_for(int, namespace="n", where="w"), TypeAdapter)
    assert isinstance(adapter_for(Point, namespace="n", where="w"), TypeAdapter)


# -- defaults -------------------------------------------------------------------------------


def test_default_is_in_schema_and_applied_when_omitted() -> None:
    # Given a parameter with default 5
    def job(a: str, n: int = 5) -> None: ...

    sig = signature_of(job, task_name="job")

    # Then the field carries the Avro default
    assert field_of(sig, "n") == {"name": "n", "type": "long", "default": 5}
    # And when the argument is omitted, the record gets the default
    assert sig.to_record(("x",), {}) == {"a": "x", "n": 5}
    assert wire_round_trip(sig, (), {"a": "x"}) == ((), {"a": "x", "n": 5})


@pytest.mark.parametrize(
    ("hint", "default", "field"),
    [
        (int | None, None, {"type": ["null", "long"], "default": None}),
        (None, None, {"type": "null", "default": None}),
        (int | None, 3, {"type": ["long", "null"], "default": 3}),
        (bool, True, {"type": "boolean", "default": True}),
        (float, 1, {"type": "double", "default": 1.0}),
        (str, "hi", {"type": "string", "default": "hi"}),
        (list[int], [], {"type": {"type": "array", "items": "long"}, "default": []}),
        (list[int], (), {"type": {"type": "array", "items": "long"}, "default": []}),
        (dict[str, int], {}, {"type": {"type": "map", "values": "long"}, "default": {}}),
        (Color | None, Color.BLUE, {"default": "BLUE"}),
        (list[int], [1, 2], {"type": {"type": "array", "items": "long"}, "default": [1, 2]}),
        (date, date(1970, 1, 11), {"type": {"type": "int", "logicalType": "date"}, "default": 10}),
        (Point, Point(0, 0), {"default": {"x": 0, "y": 0}}),
        (bytes, b"\x00\xff", {"type": "bytes", "default": "\x00\xff"}),
        # not representable as an Avro default: no "default", the Python one still applies
        (float, float("nan"), {"type": "double"}),
    ],
    ids=repr,
)
def test_defaults(hint: object, default: object, field: dict[str, Any]) -> None:
    # Given a parameter with a default
    sig = signature_of(task_with(hint, default), task_name="t")

    # When the schema is derived
    derived = field_of(sig, "value")

    # Then the field has the expected type and Avro default (if representable)
    for key, expected in field.items():
        assert derived[key] == expected
    assert ("default" in derived) == ("default" in field)
    fastavro.parse_schema(sig.record_schema)
    # And an omitted argument gets the Python default, round-tripped
    result = wire_round_trip(sig, (), {})[1]["value"]
    if default == default:  # NaN is not equal to itself
        assert result == (list(default) if isinstance(default, tuple) else default)


def test_enum_default_is_its_member_name() -> None:
    def paint(color: Color = Color.GREEN) -> None: ...

    sig = signature_of(paint, task_name="paint")
    assert field_of(sig, "color")["default"] == "GREEN"
    assert wire_round_trip(sig, (), {}) == ((), {"color": Color.GREEN})


def test_avro_default_fills_a_field_missing_from_an_older_writer() -> None:
    # Given records written by an older version of a task without the `retries` parameter
    def v1(url: str) -> None: ...

    def v2(url: str, retries: int = 3, mode: Color | None = None) -> None: ...

    old = signature_of(v1, task_name="fetch")
    new = signature_of(v2, task_name="fetch")
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old.record_schema), {"url": "u"})
    buf.seek(0)

    # When the new version reads them with schema resolution
    record: Any = fastavro.schemaless_reader(
        buf, fastavro.parse_schema(old.record_schema), fastavro.parse_schema(new.record_schema)
    )

    # Then the Avro defaults fill the missing fields
    assert new.from_record(record) == ((), {"url": "u", "retries": 3, "mode": None})


def test_dataclass_field_defaults_become_avro_defaults() -> None:
    schema = adapter_for(Image, namespace="n", where="w").schema
    by_name = {f["name"]: f for f in schema["fields"]}
    assert by_name["origin"]["default"] is None
    assert by_name["created"]["default"] is None
    assert "default" not in by_name["name"]


# -- unsupported hints ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hint", "fragment"),
    [
        (Any, "type Any is not supported"),
        (object, "type object is not supported"),
        (set[int], "type set[int] is not supported"),
        (tuple[int, str], "type tuple[int, str] is not supported"),
        (frozenset[str], "type frozenset[str] is not supported"),
        (Plain, "type Plain is not supported"),
        (list, "a list needs its item type"),
        (dict, "a dict needs its types"),
        (dict[int, str], "dict keys must be str"),
        (int | str, "unions other than Optional[X] (X | None) are not supported"),
        (int | str | None, "unions other than Optional[X] (X | None) are not supported"),
        (typing.Sequence[int], "is not supported"),
        (Perm, "Flag enums"),
        (Broken, "field 'thing' of Broken: type set[int] is not supported"),
        (list[set[int]], "list item type: type set[int] is not supported"),
        (dict[str, Any], "dict value type: type Any is not supported"),
    ],
    ids=repr,
)
def test_unsupported_hint_is_a_schema_error_naming_the_parameter(
    hint: object, fragment: str
) -> None:
    # Given a parameter with a hint that cannot be mapped to Avro
    func = task_with(hint)

    # When the signature is derived
    with pytest.raises(SchemaError) as info:
        signature_of(func, task_name="resize")

    # Then the error names the task and parameter, says what is wrong and what is supported
    message = str(info.value)
    assert message.startswith("task 'resize' parameter 'value'")
    assert fragment in message
    assert SUPPORTED_TYPES in message


def test_unsupported_return_hint_is_a_schema_error() -> None:
    def job() -> set[int]:
        return set()

    with pytest.raises(SchemaError, match=r"^task 'job' return type: type set\[int\] is not"):
        return_adapter(job, task_name="job")


def test_missing_annotation_is_a_schema_error() -> None:
    def job(a: int, b) -> None: ...  # type: ignore[no-untyped-def]

    with pytest.raises(SchemaError, match=r"^task 'job' parameter 'b' has no type annotation"):
        signature_of(job, task_name="job")


def test_star_args_is_a_schema_error() -> None:
    def job(*items: int) -> None: ...

    with pytest.raises(SchemaError, match=r"^task 'job' parameter 'items': \*items is not"):
        signature_of(job, task_name="job")


def test_star_star_kwargs_is_a_schema_error() -> None:
    def job(**options: str) -> None: ...

    with pytest.raises(SchemaError, match=r"^task 'job' parameter 'options': \*\*options is not"):
        signature_of(job, task_name="job")


def test_recursive_dataclass_is_a_schema_error() -> None:
    def walk(tree: Node) -> None: ...

    with pytest.raises(SchemaError, match="dataclass Node refers to itself"):
        signature_of(walk, task_name="walk")


def test_unresolvable_annotation_is_a_schema_error() -> None:
    def job(a: NoSuchType) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    with pytest.raises(
        SchemaError, match=r"^task 'job': cannot resolve its type hints: .*NoSuchType"
    ):
        signature_of(job, task_name="job")


def test_default_that_does_not_fit_its_type_is_a_schema_error() -> None:
    def job(n: int = "five") -> None: ...  # type: ignore[assignment]

    with pytest.raises(SchemaError) as info:
        signature_of(job, task_name="job")
    assert str(info.value) == (
        "task 'job' parameter 'n': the default 'five' does not fit the declared type: "
        "expected int, got str ('five')"
    )


def test_two_classes_with_the_same_avro_name_are_a_schema_error() -> None:
    def job(first: A.B, second: A_B) -> None: ...

    with pytest.raises(SchemaError, match="both map to the Avro name"):
        signature_of(job, task_name="job")


# -- values that do not fit -----------------------------------------------------------------


def resize(path: str, sizes: list[int], scale: float = 1.0) -> None: ...


def paint(pixel: Pixel, when: datetime, labels: dict[str, int], color: Color) -> None: ...


RESIZE = signature_of(resize, task_name="resize")
PAINT = signature_of(paint, task_name="paint")
GOOD_PAINT = (Pixel(Point(1, 2), Color.RED), AWARE, {"a": 1}, Color.RED)


def paint_with(index: int, value: object) -> tuple[object, ...]:
    args = list(GOOD_PAINT)
    args[index] = value
    return tuple(args)


@pytest.mark.parametrize(
    ("sig", "args", "kwargs", "message"),
    [
        (
            RESIZE,
            ("a.png", [1, 2, "x"]),
            {},
            "task 'resize' parameter 'sizes': list item [2]: expected int, got str ('x')",
        ),
        (
            RESIZE,
            ("a.png", [True]),
            {},
            "task 'resize' parameter 'sizes': list item [0]: expected int, got bool (True)",
        ),
        (
            RESIZE,
            (7, []),
            {},
            "task 'resize' parameter 'path': expected str, got int (7)",
        ),
        (
            RESIZE,
            ("a.png", {1, 2}),
            {},
            "task 'resize' parameter 'sizes': expected list, got set ({1, 2})",
        ),
        (
            RESIZE,
            ("a.png", [2**63]),
            {},
            "task 'resize' parameter 'sizes': list item [0]: int 9223372036854775808 does not fit "
            "in 64 bits (Avro long)",
        ),
        (
            RESIZE,
            ("a.png", []),
            {"scale": False},
            "task 'resize' parameter 'scale': expected float, got bool (False)",
        ),
        (
            RESIZE,
            ("a.png",),
            {},
            "task 'resize': missing a required argument: 'sizes'",
        ),
        (
            RESIZE,
            ("a.png", []),
            {"width": 3},
            "task 'resize': got an unexpected keyword argument 'width'",
        ),
        (
            RESIZE,
            ("a.png", [], 1.0, 4),
            {},
            "task 'resize': too many positional arguments",
        ),
        (
            RESIZE,
            ("a.png", []),
            {"path": "b.png"},
            "task 'resize': multiple values for argument 'path'",
        ),
        (
            PAINT,
            paint_with(1, datetime(2024, 1, 1, 12, 0)),
            {},
            "task 'paint' parameter 'when': datetime 2024-01-01T12:00:00 must be timezone-aware "
            "(e.g. datetime.now(timezone.utc))",
        ),
        (
            PAINT,
            paint_with(2, {"a": 1, 2: 3}),
            {},
            "task 'paint' parameter 'labels': dict key 2: expected str key, got int (2)",
        ),
        (
            PAINT,
            paint_with(2, {"a": "one"}),
            {},
            "task 'paint' parameter 'labels': dict value ['a']: expected int, got str ('one')",
        ),
        (
            PAINT,
            paint_with(3, "RED"),
            {},
            "task 'paint' parameter 'color': expected a Color member (RED, GREEN, BLUE), "
            "got str ('RED')",
        ),
        (
            PAINT,
            paint_with(3, Size.SMALL),
            {},
            "task 'paint' parameter 'color': expected a Color member (RED, GREEN, BLUE), "
            "got Size (<Size.SMALL: 1>)",
        ),
        (
            PAINT,
            paint_with(0, Pixel(Point(1, "2"), Color.RED)),  # type: ignore[arg-type]
            {},
            "task 'paint' parameter 'pixel': field 'at': field 'y': expected int, got str ('2')",
        ),
        (
            PAINT,
            paint_with(0, Point(1, 2)),
            {},
            "task 'paint' parameter 'pixel': expected Pixel instance, got Point (Point(x=1, y=2))",
        ),
    ],
)
def test_value_that_does_not_fit_is_an_argument_error_saying_where(
    sig: Signature, args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    # Given arguments that do not match the signature
    # When they are converted to a record
    with pytest.raises(ArgumentError) as info:
        sig.to_record(args, kwargs)

    # Then the error says which parameter, where inside it, and what was expected
    assert str(info.value) == message
    # And it is also a TypeError, like a wrong call of the function itself would be
    assert isinstance(info.value, TypeError)


@pytest.mark.parametrize(
    ("hint", "value", "fragment"),
    [
        (int, "3", "expected int, got str ('3')"),
        (int, 3.0, "expected int, got float (3.0)"),
        (float, "1.5", "expected float, got str ('1.5')"),
        (bool, 1, "expected bool, got int (1)"),
        (str, b"x", "expected str, got bytes (b'x')"),
        (bytes, "x", "expected bytes, got str ('x')"),
        (None, 0, "expected None, got int (0)"),
        (date, datetime(2024, 1, 1, tzinfo=UTC), "expected date, got datetime"),
        (datetime, date(2024, 1, 1), "expected datetime, got date"),
        (uuid.UUID, str(SAMPLE_UUID), "expected uuid.UUID, got str"),
        (Color, "g", "expected a Color member"),
        (Point, {"x": 1, "y": 2}, "expected Point instance, got dict"),
        (dict[str, int], [("a", 1)], "expected dict, got list"),
        (list[str], "abc", "expected list, got str ('abc')"),
    ],
    ids=repr,
)
def test_adapter_rejects_wrong_values(hint: object, value: object, fragment: str) -> None:
    # Given an adapter
    adapter = adapter_for(hint, namespace="n", where="w")

    # When a value of the wrong type is converted
    with pytest.raises(ArgumentError) as info:
        adapter.to_avro(value, "task 't' parameter 'p'")

    # Then the error starts with the path and says what was expected
    assert str(info.value).startswith("task 't' parameter 'p': ")
    assert fragment in str(info.value)


def test_long_values_are_abbreviated_in_errors() -> None:
    adapter = adapter_for(int, namespace="n", where="w")
    with pytest.raises(ArgumentError) as info:
        adapter.to_avro("x" * 1000, "p")
    assert len(str(info.value)) < 120
