"""Deterministic task ids: what a workflow step, a chord member, an error callback or a
scheduler fire is called, derived from what it belongs to (and parsed back).

Invariants: the same inputs give the same id on every process and every run — a redelivered
step, a retried chord join or a fire computed by two scheduler replicas produces the same id,
which is what makes their results idempotent. Each shape has a distinct prefix (``wf.``,
``err.``, ``sched.``) so one never parses as another.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from streamtasks.errors import ArgumentError

__all__ = [
    "chord_marker_id",
    "errback_id",
    "fire_task_id",
    "member_id",
    "parse_fire_task_id",
    "parse_step_id",
    "step_id",
]

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_SCHEDULE_NAME: Final = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_FIRE_ID: Final = re.compile(r"^sched\.(?P<name>[A-Za-z0-9._-]{1,200})\.(?P<ms>-?[0-9]{1,15})$")


# -- workflows --------------------------------------------------------------------------------
def step_id(root: str, index: int) -> str:
    """The task id of step ``index`` of chain (or chord body) ``root``."""
    return f"wf.{root}.{index}"


def parse_step_id(task_id: str) -> tuple[str, int] | None:
    """``(root, index)`` of a :func:`step_id`, or None for any other id."""
    if not task_id.startswith("wf."):
        return None
    root, _, index = task_id[3:].rpartition(".")
    return (root, int(index)) if root and index.isdigit() else None


def member_id(root: str, index: int) -> str:
    """The task id of member ``index`` of chord ``root``."""
    return f"wf.{root}.g{index}"


def chord_marker_id(root: str) -> str:
    """The id under which the join records that chord ``root`` is complete (a final result)."""
    return f"wf.{root}.chord"


def errback_id(task_id: str, index: int) -> str:
    """The task id of error callback ``index`` of task ``task_id``."""
    return f"err.{task_id}.{index}"


# -- scheduler ---------------------------------------------------------------------------------
def fire_task_id(schedule_name: str, fire_time: datetime) -> str:
    """The task id of one fire: ``sched.{name}.{unix milliseconds}``, the same on every replica."""
    if not _SCHEDULE_NAME.match(schedule_name):
        raise ArgumentError(f"{schedule_name!r} is not a valid schedule name")
    if not isinstance(fire_time, datetime) or fire_time.utcoffset() is None:
        raise ArgumentError(
            "fire_time must be a timezone-aware datetime, e.g. datetime.now(UTC); "
            f"got {fire_time!r}"
        )
    millis = (fire_time.astimezone(UTC) - _EPOCH) // _MS
    return f"sched.{schedule_name}.{millis}"


def parse_fire_task_id(task_id: str) -> tuple[str, datetime] | None:
    """``(schedule name, fire time)`` of a :func:`fire_task_id`, or None for any other id."""
    match = _FIRE_ID.match(task_id)
    if match is None:
        return None
    try:
        return match["name"], _EPOCH + int(match["ms"]) * _MS
    except OverflowError:  # the shape of a fire id, but no time a schedule can fire at
        return None
