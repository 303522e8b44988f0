"""Task ids. Deterministic ones: what a workflow step, a chord member, an error callback or a
scheduler fire is called, derived from what it belongs to (and parsed back). Random ones made
in bulk (:func:`new_task_ids`, for ``send_many``): ``uuid.uuid4()`` reads 16 bytes from the OS
and builds a ``UUID`` object per call, which costs as much as encoding a small task's
arguments; these read the randomness for many ids at once and set the version bits themselves.

Invariants: the same inputs give the same id on every process and every run — a redelivered
step, a retried chord join or a fire computed by two scheduler replicas produces the same id,
which is what makes their results idempotent. Each shape has a distinct prefix (``wf.``,
``err.``, ``sched.``) so one never parses as another. A random id is 32 lowercase hex digits of
an RFC 4122 version-4 UUID (122 random bits from :func:`os.urandom`), ``uuid4().hex``'s form.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

from streamtasks.errors import ArgumentError

__all__ = [
    "chord_marker_id",
    "errback_id",
    "fire_task_id",
    "member_id",
    "new_task_ids",
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


# -- random ids, in bulk ----------------------------------------------------------------------
#: random ids made per read of the OS's randomness
ID_CHUNK: Final = 512


def new_task_id() -> str:
    """One fresh random task id: the hex of a version-4 UUID (what ``uuid.uuid4().hex``
    gives, at a third of its cost: no ``UUID`` object). Safe on any thread and after a fork:
    every call reads the OS's randomness."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # variant: RFC 4122
    return raw.hex()


def new_task_ids(chunk: int = ID_CHUNK) -> Iterator[str]:
    """Endless fresh random task ids, ``chunk`` made at a time."""
    while True:
        raw = bytearray(os.urandom(16 * chunk))
        for i in range(6, 16 * chunk, 16):
            raw[i] = (raw[i] & 0x0F) | 0x40  # version 4
            raw[i + 2] = (raw[i + 2] & 0x3F) | 0x80  # variant: RFC 4122
        text = raw.hex()
        for j in range(0, 32 * chunk, 32):
            yield text[j : j + 32]
