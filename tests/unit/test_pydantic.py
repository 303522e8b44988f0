"""Pydantic models as task arguments (the optional ``pydantic`` extra): derived like
dataclasses, dicts validated by the model at send time, decoded records validated again."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import pytest

from streamtasks import App
from streamtasks.errors import ArgumentError, SchemaError
from streamtasks.wire.codec import Codec

pydantic = pytest.importorskip("pydantic")


class Line(pydantic.BaseModel):
    sku: str
    qty: int = pydantic.Field(default=1, ge=1)


class Order(pydantic.BaseModel):
    id: uuid.UUID
    lines: list[Line] = pydantic.Field(default_factory=list)
    placed: datetime | None = None
    on: date = date(2024, 1, 1)


class Aliased(pydantic.BaseModel):
    name: str = pydantic.Field(alias="Name")


def make_app() -> App:
    app = App("p", bootstrap_servers="127.0.0.1:9")

    @app.task(name="place")
    def place(order: Order, note: str = "") -> Order:
        return order

    return app


def test_a_model_argument_round_trips_through_the_wire() -> None:
    # Given a task taking a pydantic model
    place = make_app().tasks["place"]
    order = Order(
        id=uuid.uuid4(), lines=[Line(sku="a", qty=2)], placed=datetime(2024, 5, 1, tzinfo=UTC)
    )

    # When it is encoded and decoded
    _, kwargs = place.decode_args(place.encode_args((order,), {}))

    # Then the model comes back equal, as a model
    assert kwargs["order"] == order
    assert isinstance(kwargs["order"], Order)


def test_the_schema_is_a_record_with_the_models_defaults() -> None:
    place = make_app().tasks["place"]
    (order_field, _) = place.signature.record_schema["fields"]
    record = order_field["type"]
    assert record["type"] == "record"
    assert record["name"].endswith("Order")
    fields = {f["name"]: f for f in record["fields"]}
    assert "default" not in fields["id"]
    assert fields["lines"]["default"] == []
    assert fields["on"]["default"] == (date(2024, 1, 1) - date(1970, 1, 1)).days
    assert fields["lines"]["type"]["items"]["fields"][1]["default"] == 1


def test_a_dict_is_validated_by_the_model_at_send_time() -> None:
    place = make_app().tasks["place"]

    # A valid dict becomes the model (with its defaults)
    _, kwargs = place.decode_args(
        place.encode_args(({"id": str(uuid.UUID(int=1)), "lines": [{"sku": "b"}]},), {})
    )
    assert kwargs["order"].lines == [Line(sku="b", qty=1)]

    # An invalid one is refused before anything is sent, with pydantic's reason
    with pytest.raises(ArgumentError, match=r"(?s)parameter .order.: invalid Order.*qty"):
        place.encode_args(({"id": str(uuid.UUID(int=1)), "lines": [{"sku": "b", "qty": 0}]},), {})


def test_an_older_model_version_is_read_with_the_new_defaults() -> None:
    # Given v1 of a model without `priority`, and v2 that adds it with a default
    class V1(pydantic.BaseModel):
        sku: str

    class V2(pydantic.BaseModel):
        sku: str
        priority: int = 3

    V1.__qualname__ = V2.__qualname__ = "Item"  # the same Avro name, as after a code change
    old_app, new_app = App("a", bootstrap_servers="x:1"), App("a", bootstrap_servers="x:1")

    def job_v1(item: V1) -> None: ...

    def job_v2(item: V2) -> None: ...

    job_v1.__annotations__ = {"item": V1, "return": None}
    job_v2.__annotations__ = {"item": V2, "return": None}
    old = old_app.task(name="job")(job_v1)
    new = new_app.task(name="job")(job_v2)
    frame = old.encode_args((V1(sku="s"),), {})

    # When a v2 process reads the v1 frame (v1 known for reading)
    codec: Codec = new_app.codec
    codec.register_old(old.signature.record_schema, new.args_schema)
    _, kwargs = new.decode_args(frame)

    # Then the model is built with the new default
    assert kwargs["item"] == V2(sku="s", priority=3)


def test_aliased_fields_are_refused_with_a_reason() -> None:
    app = App("p", bootstrap_servers="127.0.0.1:9")

    def job(x: Aliased) -> None: ...

    job.__annotations__ = {"x": Aliased, "return": None}
    with pytest.raises(SchemaError, match="aliases are not supported"):
        app.task(name="job")(job)
