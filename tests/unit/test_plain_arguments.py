"""Plain (JSON) arguments to typed call arguments: errors in the user's terms (issue 12, item 7)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import pytest

from streamtasks.errors import ArgumentError
from streamtasks.wire.schema.signature import signature_of


class Shape(enum.Enum):
    SQUARE = "square"
    CIRCLE = "circle"


@dataclass(frozen=True)
class Order:
    total_cents: int
    shape: Shape
    tags: list[str] = field(default_factory=list)


def charge(order: Order, note: str | None = None) -> None:
    pass


SIG = signature_of(charge, task_name="charge")


def test_a_complete_object_becomes_the_dataclass_with_its_defaults() -> None:
    # Given a JSON object with the required fields only
    # When it is converted
    _args, kwargs = SIG.from_plain([{"total_cents": 5, "shape": "SQUARE"}], {})
    # Then the dataclass is built, its own defaults applied
    assert kwargs["order"] == Order(5, Shape.SQUARE, [])


def test_an_unknown_field_is_refused_with_the_fields_and_their_types() -> None:
    # Given an object with a field the dataclass does not have (a typo)
    plain = {"total_cents": 5, "shape": "SQUARE", "totl": 1}
    # When it is converted, Then it is refused, naming the field and what is expected
    with pytest.raises(ArgumentError) as err:
        SIG.from_plain([plain], {})
    message = str(err.value)
    assert "parameter 'order'" in message
    assert "Order has no field 'totl'" in message
    assert "total_cents (int)" in message and "shape (Shape (one of SQUARE, CIRCLE))" in message


def test_a_missing_field_names_the_field_and_its_type() -> None:
    with pytest.raises(ArgumentError, match=r"Order field 'total_cents' \(int\) is missing"):
        SIG.from_plain([{"shape": "SQUARE"}], {})


@pytest.mark.parametrize("plain", [5, [1], "x"])
def test_a_non_object_for_a_dataclass_says_an_object_is_expected(plain: object) -> None:
    with pytest.raises(ArgumentError) as err:
        SIG.from_plain([plain], {})
    message = str(err.value)
    assert "expected an object with the fields of Order" in message
    assert "subscriptable" not in message and "indices" not in message


def test_a_wrong_enum_name_lists_the_members() -> None:
    with pytest.raises(
        ArgumentError, match=r"field 'shape': expected Shape \(one of SQUARE, CIRCLE\), got str"
    ):
        SIG.from_plain([{"total_cents": 5, "shape": "OVAL"}], {})


def test_a_wrong_list_item_says_where() -> None:
    with pytest.raises(ArgumentError, match=r"field 'tags': list item \[1\]: expected str"):
        SIG.from_plain([{"total_cents": 5, "shape": "SQUARE", "tags": ["a", 2]}], {})


def test_cli_timestamps_are_iso_8601_with_their_age() -> None:
    from streamtasks.cli.common import timestamp

    now = 1_796_117_373_627
    assert timestamp(now - 300_000, now) == "2026-12-01T09:24:33Z (5m ago)"
    assert timestamp(now + 7_200_000, now) == "2026-12-01T11:29:33Z (in 2h)"
    assert timestamp(None, now) == "-"
