"""Avro defaults for every supported type, proven by schema evolution through the codec.

Each case is one task signature upgrade: version 1 lacks a parameter, version 2 adds it with a
default. A frame written with version 1 (an event queued before the upgrade) is decoded by a
process that knows version 2 (and version 1 as a reader alias) and runs with the default.
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest

from streamtasks.wire.codec import Codec
from streamtasks.wire.schema.signature import signature_of


class Tier(enum.Enum):
    FREE = "free"
    PRO = "pro"


@dataclasses.dataclass(frozen=True)
class Address:
    city: str
    zip: str | None = None


@dataclasses.dataclass(frozen=True)
class Options:
    tags: list[str] = dataclasses.field(default_factory=list)
    limits: dict[str, int] = dataclasses.field(default_factory=lambda: {"a": 1})
    home: Address = Address("Oslo")
    since: date = date(2020, 2, 29)


SAMPLE_UUID = uuid.UUID("12345678-1234-5678-1234-567812345678")

CASES: list[tuple[str, object, object]] = [
    ("date", date, date(2024, 2, 29)),
    ("date_before_epoch", date, date(1969, 7, 20)),
    ("datetime", datetime, datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)),
    ("uuid", uuid.UUID, SAMPLE_UUID),
    ("bytes", bytes, b"\x00\x01\x7f\x80\xfe\xff"),
    ("enum", Tier, Tier.PRO),
    ("dataclass", Address, Address("Bergen")),
    ("nested_dataclass", Options, Options()),
    ("optional_none", int | None, None),
    ("optional_value", int | None, 7),
    ("optional_date", date | None, date(2001, 1, 1)),
    ("optional_dataclass", Address | None, Address("Rome")),
    ("list_of_str", list[str], ["a", "b"]),
    ("list_of_bytes", list[bytes], [b"\xff", b""]),
    ("list_of_datetime", list[datetime], [datetime(2000, 1, 1, tzinfo=UTC)]),
    ("dict_of_uuid", dict[str, uuid.UUID], {"k": SAMPLE_UUID}),
    ("dict_of_enum", dict[str, Tier], {"x": Tier.FREE}),
    ("list_of_dataclass", list[Address], [Address("Lima", None)]),
    ("empty_list", list[int], []),
    ("str", str, "hé"),
    ("float", float, 2.5),
    ("bool", bool, False),
]


def versions(hint: object, default: object) -> tuple[Callable[..., None], Callable[..., None]]:
    """Version 1 of a task takes ``order``; version 2 adds ``extra: hint = default``."""

    def v1(order: str) -> None: ...

    def v2(order: str, extra: object = None) -> None: ...

    v2.__defaults__ = (default,)
    v2.__annotations__ = {"order": str, "extra": hint, "return": None}
    return v1, v2


@pytest.mark.parametrize(("hint", "default"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_event_written_with_old_schema_is_decoded_by_new(hint: object, default: object) -> None:
    # Given version 1 and version 2 (which adds a parameter with a default) of a task
    v1, v2 = versions(hint, default)
    old = signature_of(v1, task_name="shop.charge")
    new = signature_of(v2, task_name="shop.charge")
    # And the added field carries an Avro default
    (added,) = [f for f in new.record_schema["fields"] if f["name"] == "extra"]
    assert "default" in added
    # And a frame written by version 1, before the upgrade
    writer = Codec()
    frame = writer.encode(writer.register(old.record_schema), old.to_record(("o-1",), {}))

    # When a process that knows version 2 (and version 1 for reading) decodes it
    reader = Codec()
    current = reader.register(new.record_schema)
    reader.register_old(old.record_schema, current)
    schema, record = reader.decode(frame, expect=current)

    # Then it reads as version 2 with the Python default, equal and of the same type
    assert schema is current
    _, kwargs = new.from_record(record)
    assert kwargs == {"order": "o-1", "extra": default}
    assert type(kwargs["extra"]) is type(default)


@pytest.mark.parametrize(("hint", "default"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_defaults_are_valid_for_fastavro_and_survive_its_parser(
    hint: object, default: object
) -> None:
    # Given a signature with a defaulted parameter
    _, v2 = versions(hint, default)
    sig = signature_of(v2, task_name="t")

    # When fastavro parses the schema with default validation
    parsed = fastavro.parse_schema(sig.record_schema, _write_hint=False)

    # Then it accepts it (an invalid default would raise) and keeps the default
    (extra,) = [f for f in parsed["fields"] if f["name"] == "extra"]
    assert "default" in extra


def test_factory_that_differs_per_call_gives_no_avro_default() -> None:
    # Given a dataclass whose field's factory gives a new value per call
    @dataclasses.dataclass
    class Stamp:
        at: datetime = dataclasses.field(default_factory=lambda: datetime.now(UTC))
        tags: list[str] = dataclasses.field(default_factory=list)

    def job(stamp: Stamp) -> None: ...

    job.__annotations__ = {"stamp": Stamp, "return": None}

    # When its schema is derived
    sig = signature_of(job, task_name="job")

    # Then only the deterministic factory becomes an Avro default (the schema stays stable)
    fields = {f["name"]: f for f in sig.record_schema["fields"][0]["type"]["fields"]}
    assert "default" not in fields["at"]
    assert fields["tags"]["default"] == []


def test_nested_optional_not_matching_first_branch_gets_no_default() -> None:
    # Given a default whose nested optional field holds a value, though its union is null-first
    def job(home: Address = Address("Oslo", "0150")) -> None: ...

    job.__annotations__ = {"home": Address, "return": None}

    # When its schema is derived
    sig = signature_of(job, task_name="job")

    # Then no Avro default is written (Avro requires union defaults of the first branch)
    field: dict[str, Any] = sig.record_schema["fields"][0]
    assert "default" not in field
    # And the Python default still applies at send time
    assert sig.to_record((), {}) == {"home": {"city": "Oslo", "zip": "0150"}}
