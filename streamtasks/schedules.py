"""Periodic schedules and the pure decisions about them: when a schedule fires, and which of its
fire times a scheduler should publish now.

A :class:`Schedule` names a task, its arguments, and *when* to send it: a cron expression
evaluated in an IANA time zone (``cron=``, ``tz=``) or a fixed interval (``every=``) aligned to
an ``anchor``. Nothing here reads a clock or does I/O: the scheduler passes ``now`` and its
persisted last fire time in, and publishes what comes out.

Invariants:
- Fire times are aware UTC datetimes on whole milliseconds (cron: whole seconds). Every
  function takes aware datetimes (naive ones are rejected) and returns UTC.
- Fire times depend on the schedule alone (interval fire times are ``anchor + k * every``), so
  every replica computes the same times and :func:`fire_task_id` gives the same task id for the
  same fire everywhere; :func:`parse_fire_task_id` inverts it.
- :func:`due_fires` returns times in ``(last_fired, now]`` only, oldest first, at most
  ``max_catchup`` of them, and never a time before the schedule existed.

Cron and daylight saving time:
- A local time that does not exist (spring forward: 02:00-02:59 in Europe/Berlin on
  2026-03-29) is moved by croniter to the first instant after the gap, 03:00 local; every fire
  inside the gap collapses into that one fire ("30 2 * * *" fires at 03:00 that day,
  "*/30 * * * *" fires once at 03:00, then at 03:30).
- A local time that occurs twice (fall back: 02:00-02:59 on 2026-10-25) fires once, at its
  first occurrence (summer time). croniter alone would fire it twice; the repeat is dropped so
  a cron schedule fires at most once per local wall-clock time ("30 2 * * *" fires once that
  night; "0 * * * *" has no fire at the repeated 02:00). For a cadence in real time, use
  ``tz="UTC"`` or ``every=``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from streamtasks.errors import ArgumentError, ConfigError
from streamtasks.wire.ids import fire_task_id, parse_fire_task_id

__all__ = [
    "DEFAULT_GRACE",
    "EPOCH",
    "Misfire",
    "Schedule",
    "due_fires",
    "fire_task_id",
    "fires_between",
    "next_fire",
    "parse_fire_task_id",
]

Misfire = Literal["skip", "once", "all"]

#: The default interval anchor: interval fire times are ``EPOCH + k * every``.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: How late a fire may be published and still count as on time (see :func:`due_fires`).
DEFAULT_GRACE = timedelta(seconds=5)

_MS = timedelta(milliseconds=1)
_US = timedelta(microseconds=1)
_NAME = re.compile(r"^[A-Za-z0-9._-]{1,200}$")
_CRON_HELP = (
    'use 5 fields "minute hour day-of-month month day-of-week", e.g. "*/5 * * * *" (every 5 '
    'minutes) or "30 2 * * 1-5" (02:30 on weekdays), optionally a 6th field for seconds'
)


@dataclass(frozen=True)
class Schedule:
    """Send ``task_name(*args, **kwargs)`` at each fire time of ``cron`` (in ``tz``) or ``every``.

    ``name`` is unique per app and is the schedule's Kafka key and part of its fire task ids.
    ``misfire`` says what happens to fire times missed while no scheduler ran (``"skip"``,
    ``"once"``, ``"all"``, at most ``max_catchup``); a fire published less than ``grace`` after
    its time counts as on time, not missed. See :func:`due_fires`.
    """

    name: str
    task_name: str
    args: tuple[Any, ...] = field(default=(), hash=False)
    #: A private copy of the keyword arguments (typed read-only; excluded from the hash).
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)
    cron: str | None = None
    tz: str = "UTC"
    every: timedelta | None = None
    anchor: datetime = EPOCH
    misfire: Misfire = "skip"
    max_catchup: int = 100
    grace: timedelta = DEFAULT_GRACE
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "args", tuple(self.args))
        object.__setattr__(self, "kwargs", dict(self.kwargs))
        object.__setattr__(self, "_zone", self._check())
        if self.every is not None:
            object.__setattr__(self, "anchor", self.anchor.astimezone(UTC))

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the schedule's wall-clock times are in (from ``tz``)."""
        return self._zone

    def _check(self) -> ZoneInfo:
        """Validate every field; return the time zone. Raises :class:`ConfigError`."""
        where = f"schedule {self.name!r}"
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ConfigError(
                f"{where}: a schedule name must be 1-200 letters, digits, '.', '_' or '-' (it is "
                "a Kafka key and part of task ids); pass name='nightly-report'"
            )
        if not isinstance(self.task_name, str) or not self.task_name:
            raise ConfigError(f"{where}: task_name must name a registered task")
        if (self.cron is None) == (self.every is None):
            raise ConfigError(
                f"{where}: pass exactly one of cron= (e.g. cron='*/5 * * * *') or every= "
                "(e.g. every=timedelta(minutes=5))"
            )
        if self.misfire not in get_args(Misfire):
            raise ConfigError(
                f"{where}: misfire must be 'skip', 'once' or 'all', not {self.misfire!r}"
            )
        if isinstance(self.max_catchup, bool) or not isinstance(self.max_catchup, int):
            raise ConfigError(f"{where}: max_catchup must be an int, e.g. max_catchup=100")
        if self.max_catchup < 1:
            raise ConfigError(f"{where}: max_catchup must be >= 1, not {self.max_catchup}")
        if not isinstance(self.grace, timedelta) or self.grace <= timedelta(0):
            raise ConfigError(
                f"{where}: grace must be a positive timedelta, e.g. timedelta(seconds=5)"
            )
        if not isinstance(self.anchor, datetime) or self.anchor.utcoffset() is None:
            raise ConfigError(
                f"{where}: anchor must be a timezone-aware datetime, e.g. "
                "datetime(2026, 1, 1, tzinfo=UTC)"
            )
        zone = _parse_zone(where, self.tz)
        if self.every is not None:
            _check_interval(where, self.every, self.anchor, self.tz)
        else:
            _check_cron(where, self.cron, zone, self.anchor)
        return zone


def _parse_zone(where: str, tz: object) -> ZoneInfo:
    try:
        if not isinstance(tz, str):
            raise ValueError(tz)
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"{where}: unknown time zone {tz!r}; use an IANA name such as 'Europe/Berlin' or "
            "'UTC' (install the tzdata package where the system has no zone database)"
        ) from exc


def _check_interval(where: str, every: object, anchor: datetime, tz: str) -> None:
    if not isinstance(every, timedelta):
        raise ConfigError(f"{where}: every= takes a timedelta, e.g. every=timedelta(seconds=30)")
    if every <= timedelta(0):
        raise ConfigError(f"{where}: every must be positive, e.g. every=timedelta(seconds=30)")
    if every % _MS or (anchor - EPOCH) % _MS:
        raise ConfigError(
            f"{where}: every and anchor must be whole milliseconds (fire task ids have "
            "millisecond resolution)"
        )
    if tz != "UTC":
        raise ConfigError(
            f"{where}: tz= applies to cron schedules; an interval is absolute time (shift it "
            "with anchor=, or use cron= with tz=)"
        )


def _check_cron(where: str, cron: object, zone: ZoneInfo, anchor: datetime) -> None:
    if anchor != EPOCH:
        raise ConfigError(f"{where}: anchor= applies to every= schedules, not to cron=")
    if not isinstance(cron, str) or len(cron.split()) == 7:
        raise ConfigError(f"{where}: bad cron expression {cron!r}: {_CRON_HELP}")
    try:
        # A valid expression that never matches (e.g. February 30th) fails here, not later.
        next(_cron_forward(cron, zone, EPOCH))
    except CroniterError as exc:
        raise ConfigError(f"{where}: bad cron expression {cron!r} ({exc}): {_CRON_HELP}") from exc


# -- fire times -----------------------------------------------------------------------------
def next_fire(schedule: Schedule, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (aware), in UTC."""
    return next(_forward(schedule, _utc(after, "after")))


def fires_between(
    schedule: Schedule, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """Fire times in ``(after, until]``, oldest first: the first ``limit`` of them."""
    start, end = _utc(after, "after"), _utc(until, "until")
    fires: list[datetime] = []
    if limit <= 0:
        return fires
    for fire in _forward(schedule, start):
        if fire > end:
            break
        fires.append(fire)
        if len(fires) == limit:
            break
    return fires


def _forward(schedule: Schedule, after: datetime) -> Iterator[datetime]:
    """Fire times strictly after ``after``, oldest first, forever."""
    if schedule.every is None:
        assert schedule.cron is not None
        yield from _cron_forward(schedule.cron, schedule.zone, after)
        return
    k = (after - schedule.anchor) // schedule.every + 1
    while True:
        yield schedule.anchor + k * schedule.every
        k += 1


def _backward(schedule: Schedule, until: datetime) -> Iterator[datetime]:
    """Fire times at or before ``until``, newest first."""
    if schedule.every is None:
        assert schedule.cron is not None
        yield from _cron_walk(schedule.cron, schedule.zone, until + _US, forward=False)
        return
    k = (until - schedule.anchor) // schedule.every
    while True:
        yield schedule.anchor + k * schedule.every
        k -= 1


def _cron_forward(cron: str, zone: ZoneInfo, after: datetime) -> Iterator[datetime]:
    return _cron_walk(cron, zone, after, forward=True)


def _cron_walk(cron: str, zone: ZoneInfo, start: datetime, *, forward: bool) -> Iterator[datetime]:
    """croniter's fire times strictly after (before) ``start``, minus repeated wall times."""
    it = croniter(cron, start.astimezone(zone))
    step = it.get_next if forward else it.get_prev
    while True:
        fire: datetime = step(datetime).astimezone(UTC)
        # fold=1: the second occurrence of a wall time repeated when clocks go back.
        if not fire.astimezone(zone).fold:
            yield fire


# -- the misfire decision -------------------------------------------------------------------
def due_fires(
    schedule: Schedule, last_fired: datetime | None, now: datetime, *, started_at: datetime
) -> list[datetime]:
    """The fire times to publish now, oldest first.

    Candidates are the fire times in ``(last_fired, now]``; a schedule that never fired
    (``last_fired=None``) has candidates from ``started_at`` (inclusive) only, so it never
    gets a backlog from before it existed. A candidate younger than ``schedule.grace``
    (``now - t < grace``) is *on time* and always published: a scheduler ticking every
    100 ms, or stalled for less than ``grace``, publishes every fire exactly once. Older
    candidates were *missed* (no scheduler ran) and follow ``schedule.misfire``:

    - ``"skip"``: none of them is published.
    - ``"once"``: the most recent missed one is published (one catch-up run).
    - ``"all"``: all of them are published, oldest first.

    At most ``max_catchup`` times are returned; over that, the newest are kept. The caller
    records the last returned time as its new ``last_fired`` (and keeps the old one when
    nothing is returned).
    """
    end = _utc(now, "now")
    start = _utc(started_at, "started_at")
    lower = _utc(last_fired, "last_fired") if last_fired is not None else start - _US
    cutoff = end - schedule.grace
    on_time = _newest(schedule, until=end, after=max(lower, cutoff), limit=schedule.max_catchup)
    room = schedule.max_catchup - len(on_time)
    missed: list[datetime] = []
    if schedule.misfire == "once":
        missed = _newest(schedule, until=cutoff, after=lower, limit=min(1, room))
    elif schedule.misfire == "all":
        missed = _newest(schedule, until=cutoff, after=lower, limit=room)
    return [*reversed(missed), *reversed(on_time)]


def _newest(schedule: Schedule, *, until: datetime, after: datetime, limit: int) -> list[datetime]:
    """Fire times in ``(after, until]``, newest first: the last ``limit`` of them."""
    fires: list[datetime] = []
    if limit <= 0 or until <= after:
        return fires
    for fire in _backward(schedule, until):
        if fire <= after:
            break
        fires.append(fire)
        if len(fires) == limit:
            break
    return fires


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.utcoffset() is None:
        raise ArgumentError(
            f"{what} must be a timezone-aware datetime, e.g. datetime.now(UTC); got {value!r}"
        )
    return value.astimezone(UTC)
