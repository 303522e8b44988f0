"""Two versions of one small app, for the schema export and compatibility tests.

``v1`` is what was deployed (and exported); ``v2_ok`` evolves it compatibly (a parameter
added with a default); ``v2_broken`` breaks it (``currency`` loses its default, ``note`` is
added without one, a Plan symbol is removed, ``amount`` changes from int to str).
"""

from __future__ import annotations

import dataclasses
import enum
import uuid
from datetime import date

from streamtasks import App


class Plan(enum.Enum):
    FREE = "free"
    PRO = "pro"
    TEAM = "team"


# the same enum after TEAM was dropped (same module and name, so the same Avro type)
PlanV2 = enum.Enum("Plan", {"FREE": "free", "PRO": "pro"}, module=__name__, qualname="Plan")


@dataclasses.dataclass(frozen=True)
class Address:
    city: str
    zip: str | None = None


def _app() -> App:
    return App("shop", bootstrap_servers="127.0.0.1:9")


v1 = _app()


@v1.task(name="shop.charge")
def charge(customer: uuid.UUID, amount: int, currency: str = "EUR") -> Address:
    """Charge a customer."""
    return Address("Oslo")


@v1.task(name="shop.ship")
def ship(order: str, to: Address, plan: Plan = Plan.FREE) -> None:
    """Ship an order."""


v2_ok = _app()


@v2_ok.task(name="shop.charge")
def charge_ok(
    customer: uuid.UUID, amount: int, currency: str = "EUR", on: date = date(2024, 1, 1)
) -> Address:
    """Charge a customer."""
    return Address("Oslo")


@v2_ok.task(name="shop.ship")
def ship_ok(order: str, to: Address, plan: Plan = Plan.FREE, express: bool = False) -> None:
    """Ship an order."""


v2_broken = _app()


@v2_broken.task(name="shop.charge")
def charge_broken(customer: uuid.UUID, amount: str, currency: str, note: str) -> Address:
    return Address("Oslo")


@v2_broken.task(name="shop.ship")
def ship_broken(order: str, to: Address, plan: PlanV2 = PlanV2.FREE) -> None:  # type: ignore[valid-type]
    """Ship an order."""


# after v2_ok: `on` became required (fine against v2_ok's writers, not against v1's)
v3_required = _app()


@v3_required.task(name="shop.charge")
def charge_v3(customer: uuid.UUID, amount: int, on: date, currency: str = "EUR") -> Address:
    return Address("Oslo")


v3_required.task(name="shop.ship")(ship_ok.func)
