"""The pure schedule decisions: fire times (cron, intervals, DST), misfires, fire ids, and
registering schedules on an App."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from streamtasks.app import App
from streamtasks.errors import ArgumentError, ConfigError
from streamtasks.schedules import (
    DEFAULT_GRACE,
    Misfire,
    Schedule,
    due_fires,
    fire_task_id,
    fires_between,
    next_fire,
    parse_fire_task_id,
)

BERLIN = ZoneInfo("Europe/Berlin")
SECOND = timedelta(seconds=1)
MS = timedelta(milliseconds=1)
US = timedelta(microseconds=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def cron(expr: str, tz: str = "UTC", **options: Any) -> Schedule:
    return Schedule(name="s", task_name="t", cron=expr, tz=tz, **options)


def every(interval: timedelta, **options: Any) -> Schedule:
    return Schedule(name="s", task_name="t", every=interval, **options)


def local(fires: list[datetime]) -> list[str]:
    """Fire times as Berlin wall-clock strings with their UTC offset, for readable asserts."""
    return [f.astimezone(BERLIN).strftime("%m-%d %H:%M%z") for f in fires]


# -- validation ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "exactly one of cron="),
        ({"cron": "* * * * *", "every": SECOND}, "exactly one of cron="),
        (
            {"cron": "61 * * * *"},
            r"bad cron expression '61 \* \* \* \*' \(.*\): .*e\.g\. \"\*/5 \* \* \* \*\"",
        ),
        ({"cron": "every 5 minutes"}, "bad cron expression"),
        ({"cron": "0 0 30 2 *"}, "bad cron expression"),  # valid fields, but never matches
        ({"cron": "0 0 1 1 * 0 2030"}, "bad cron expression"),  # a year field: it would end
        ({"cron": "* * * * *", "tz": "Europe/Berln"}, "unknown time zone 'Europe/Berln'.*IANA"),
        ({"cron": "* * * * *", "tz": "../etc/passwd"}, "unknown time zone"),
        ({"cron": "* * * * *", "anchor": utc(2026, 1, 1)}, "anchor= applies to every="),
        ({"every": timedelta(0)}, "every must be positive"),
        ({"every": -SECOND}, "every must be positive"),
        ({"every": 30}, "every= takes a timedelta"),
        ({"every": timedelta(microseconds=1500)}, "whole milliseconds"),
        ({"every": SECOND, "anchor": utc(2026, 1, 1) + timedelta(microseconds=1)}, "whole milli"),
        ({"every": SECOND, "anchor": datetime(2026, 1, 1)}, "timezone-aware"),
        ({"every": SECOND, "tz": "Europe/Berlin"}, "tz= applies to cron"),
        ({"every": SECOND, "misfire": "never"}, "misfire must be 'skip', 'once' or 'all'"),
        ({"every": SECOND, "max_catchup": 0}, "max_catchup must be >= 1"),
        ({"every": SECOND, "grace": timedelta(0)}, "grace must be a positive timedelta"),
    ],
)
def test_a_bad_schedule_fails_with_a_fix_it_message(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Schedule(name="s", task_name="t", **options)


@pytest.mark.parametrize("name", ["", "nightly report", "a/b", "x" * 201, "ü"])
def test_a_schedule_name_must_be_safe_as_a_kafka_key_and_in_task_ids(name: str) -> None:
    with pytest.raises(ConfigError, match="pass name="):
        Schedule(name=name, task_name="t", every=SECOND)


def test_a_schedule_keeps_its_own_copy_of_the_arguments_and_is_hashable() -> None:
    # Given arguments in mutable containers
    args: list[Any] = [1, [2]]
    kwargs = {"to": "ops"}
    # When a schedule is made from them and the originals change
    s = Schedule(name="s", task_name="t", args=args, kwargs=kwargs, every=SECOND)  # type: ignore[arg-type]
    kwargs["to"] = "someone else"
    # Then the schedule still has what it was given, as a tuple and a dict copy
    assert s.args == (1, [2])
    assert s.kwargs == {"to": "ops"}
    assert s == Schedule(name="s", task_name="t", args=(1, [2]), kwargs={"to": "ops"}, every=SECOND)
    assert hash(s) == hash(Schedule(name="s", task_name="t", every=SECOND))


# -- next fire: intervals -----------------------------------------------------------------------
def test_interval_fires_are_aligned_to_the_epoch_so_every_replica_computes_the_same_times() -> None:
    s = every(timedelta(seconds=30))
    # Given replicas asking at different moments
    # When each asks for the next fire
    # Then they all land on the same :00/:30 grid
    assert next_fire(s, utc(2026, 5, 1, 10, 0, 7)) == utc(2026, 5, 1, 10, 0, 30)
    assert next_fire(s, utc(2026, 5, 1, 10, 0, 29, 999000)) == utc(2026, 5, 1, 10, 0, 30)
    assert next_fire(s, utc(2026, 5, 1, 10, 0, 0, 1)) == utc(2026, 5, 1, 10, 0, 30)


def test_next_fire_is_strictly_after_the_given_time() -> None:
    s = every(timedelta(seconds=30))
    assert next_fire(s, utc(2026, 5, 1, 10, 0, 30)) == utc(2026, 5, 1, 10, 1, 0)


def test_an_anchor_shifts_the_interval_grid() -> None:
    # Given hourly fires anchored at a quarter past
    s = every(timedelta(hours=1), anchor=datetime(2026, 1, 1, 0, 15, tzinfo=BERLIN))
    # When asked after 10:20 UTC
    # Then the next fire is 11:15 UTC (the anchor is an instant: 00:15 CET is 23:15 UTC)
    assert next_fire(s, utc(2026, 5, 1, 10, 20)) == utc(2026, 5, 1, 11, 15)
    assert s.anchor.tzinfo is UTC


def test_fire_times_are_returned_in_utc_whatever_zone_the_input_has() -> None:
    after = datetime(2026, 5, 1, 12, 0, 7, tzinfo=BERLIN)
    fire = next_fire(every(timedelta(seconds=30)), after)
    assert fire == utc(2026, 5, 1, 10, 0, 30)
    assert fire.tzinfo is UTC


def test_a_naive_time_is_rejected_rather_than_guessed() -> None:
    with pytest.raises(ArgumentError, match="timezone-aware"):
        next_fire(every(SECOND), datetime(2026, 5, 1, 10, 0))


# -- next fire: cron ----------------------------------------------------------------------------
def test_cron_in_utc() -> None:
    s = cron("*/5 * * * *")
    assert next_fire(s, utc(2026, 5, 1, 10, 2, 30)) == utc(2026, 5, 1, 10, 5)
    assert next_fire(s, utc(2026, 5, 1, 10, 5)) == utc(2026, 5, 1, 10, 10)
    assert next_fire(s, utc(2026, 5, 1, 10, 4, 59, 999999)) == utc(2026, 5, 1, 10, 5)


def test_cron_with_a_seconds_field() -> None:
    s = cron("* * * * * */10")
    assert next_fire(s, utc(2026, 5, 1, 10, 0, 0, 500)) == utc(2026, 5, 1, 10, 0, 10)


def test_cron_is_evaluated_in_the_schedules_time_zone() -> None:
    # Given 07:00 on weekdays in Berlin
    s = cron("0 7 * * 1-5", tz="Europe/Berlin")
    # Then it is 06:00 UTC in winter and 05:00 UTC in summer
    assert next_fire(s, utc(2026, 1, 9, 12)) == utc(2026, 1, 12, 6)  # Friday -> Monday
    assert next_fire(s, utc(2026, 7, 1, 12)) == utc(2026, 7, 2, 5)


# -- DST: Europe/Berlin springs forward on 2026-03-29 and falls back on 2026-10-25 --------------
def test_spring_forward_a_daily_fire_in_the_missing_hour_runs_at_the_end_of_the_gap() -> None:
    s = cron("30 2 * * *", tz="Europe/Berlin")
    fires = fires_between(s, utc(2026, 3, 27, 12), utc(2026, 3, 31, 12), limit=10)
    assert local(fires) == [
        "03-28 02:30+0100",
        "03-29 03:00+0200",  # 02:30 does not exist that night: croniter moves it to 03:00
        "03-30 02:30+0200",
        "03-31 02:30+0200",
    ]


def test_spring_forward_fires_inside_the_gap_collapse_into_one() -> None:
    s = cron("*/30 * * * *", tz="Europe/Berlin")
    fires = fires_between(s, utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 2, 0), limit=10)
    assert local(fires) == [
        "03-29 01:30+0100",
        "03-29 03:00+0200",
        "03-29 03:30+0200",
        "03-29 04:00+0200",
    ]


def test_spring_forward_an_hourly_schedule_fires_23_times_that_day() -> None:
    s = cron("0 * * * *", tz="Europe/Berlin")
    day = fires_between(s, utc(2026, 3, 28, 22, 59), utc(2026, 3, 29, 21, 59), limit=100)
    assert len(day) == 23
    assert len(set(day)) == 23


def test_fall_back_a_daily_fire_in_the_repeated_hour_runs_once_at_its_first_occurrence() -> None:
    s = cron("30 2 * * *", tz="Europe/Berlin")
    fires = fires_between(s, utc(2026, 10, 23, 12), utc(2026, 10, 27, 12), limit=10)
    # croniter alone would also fire at 02:30+0100 (01:30 UTC); the repeat is dropped
    assert local(fires) == [
        "10-24 02:30+0200",
        "10-25 02:30+0200",
        "10-26 02:30+0100",
        "10-27 02:30+0100",
    ]


def test_fall_back_the_repeated_wall_times_do_not_fire_again() -> None:
    s = cron("*/30 * * * *", tz="Europe/Berlin")
    fires = fires_between(s, utc(2026, 10, 24, 23, 45), utc(2026, 10, 25, 2, 45), limit=10)
    assert local(fires) == [
        "10-25 02:00+0200",
        "10-25 02:30+0200",
        "10-25 03:00+0100",  # 02:00+0100 and 02:30+0100 were already fired an hour earlier
        "10-25 03:30+0100",
    ]


def test_fall_back_next_fire_from_inside_the_repeated_hour_skips_the_repeat() -> None:
    s = cron("30 2 * * *", tz="Europe/Berlin")
    inside = utc(2026, 10, 25, 1, 10)  # 02:10+0100, the second 02:10 of the night
    assert local([next_fire(s, inside)]) == ["10-26 02:30+0100"]


def test_fall_back_an_hourly_schedule_fires_once_per_wall_clock_hour() -> None:
    s = cron("0 * * * *", tz="Europe/Berlin")
    # the local day 2026-10-25 is 25 hours long: 22:00 UTC on the 24th to 23:00 UTC on the 25th
    day = fires_between(s, utc(2026, 10, 24, 21, 59), utc(2026, 10, 25, 22, 59), limit=100)
    assert len(day) == 24
    assert utc(2026, 10, 25, 1) not in day  # 02:00+0100, the repeated 02:00


@pytest.mark.parametrize("expr", ["30 2 * * *", "0 * * * *", "*/7 * * * *", "15 1-4 * * *"])
@pytest.mark.parametrize("month", [3, 10])
def test_walking_back_from_now_finds_the_same_fires_as_walking_forward(
    expr: str, month: int
) -> None:
    # Given a cron schedule across a DST change, and misfire="all" (which walks backwards)
    s = cron(expr, tz="Europe/Berlin", misfire="all", max_catchup=10_000, grace=MS)
    start, end = utc(2026, month, 27), utc(2026, month, 31)
    # When every fire time since `start` is due
    due = due_fires(s, start, end, started_at=start)
    # Then it is exactly the forward enumeration
    assert due == fires_between(s, start, end, limit=10_000)
    assert due


# -- fires_between ------------------------------------------------------------------------------
def test_fires_between_excludes_after_includes_until_and_stops_at_the_limit() -> None:
    s = every(SECOND)
    t = utc(2026, 5, 1, 10)
    assert fires_between(s, t, t + 3 * SECOND, limit=10) == [
        t + SECOND,
        t + 2 * SECOND,
        t + 3 * SECOND,
    ]
    assert fires_between(s, t, t + 3 * SECOND, limit=2) == [t + SECOND, t + 2 * SECOND]
    assert fires_between(s, t, t + 3 * SECOND, limit=0) == []
    assert fires_between(s, t, t + SECOND / 2, limit=10) == []
    assert fires_between(s, t + SECOND, t, limit=10) == []


# -- due_fires ----------------------------------------------------------------------------------
T0 = utc(2026, 5, 1, 10)  # a fire time of every=1s


def test_on_time_the_newest_fire_is_due_once() -> None:
    s = every(SECOND)
    # Given the fire at T0 was published, and T0+1s passed 30 ms ago
    # When the scheduler ticks
    # Then exactly T0+1s is due
    assert due_fires(s, T0, T0 + SECOND + 30 * MS, started_at=T0) == [T0 + SECOND]


def test_nothing_is_due_before_the_next_fire_time() -> None:
    s = every(SECOND)
    assert due_fires(s, T0, T0 + 999 * MS, started_at=T0) == []
    assert due_fires(s, T0, T0, started_at=T0) == []


def test_nothing_is_due_at_or_before_last_fired_even_if_this_clock_is_behind() -> None:
    # Given a new leader whose clock is 2 s behind the one that fired T0+5s
    s = every(SECOND)
    # Then it publishes nothing until its clock passes T0+5s
    assert due_fires(s, T0 + 5 * SECOND, T0 + 3 * SECOND, started_at=T0) == []
    assert due_fires(s, T0 + 5 * SECOND, T0 + 6 * SECOND, started_at=T0) == [T0 + 6 * SECOND]


def test_a_new_schedule_fires_from_its_start_only_never_a_backlog() -> None:
    s = every(SECOND, misfire="all")
    # Given a schedule that never fired, started at T0+0.5s
    started = T0 + 500 * MS
    # When the scheduler ticks long after, with misfire="all"
    due = due_fires(s, None, T0 + 10 * SECOND, started_at=started)
    # Then only fires at or after the start are due (not T0 or earlier)
    assert due == [T0 + n * SECOND for n in range(1, 11)]


def test_a_new_schedule_fires_at_its_start_instant_if_that_is_a_fire_time() -> None:
    s = every(SECOND)
    assert due_fires(s, None, T0 + 10 * MS, started_at=T0) == [T0]
    assert due_fires(s, None, T0 + 10 * MS, started_at=T0 + MS) == []


def test_a_new_schedule_that_started_long_ago_follows_its_misfire_policy() -> None:
    # Given a daily job whose schedule was first seen a week ago and never fired
    s = cron("0 7 * * *", misfire="skip")
    now = utc(2026, 5, 8, 12)
    # Then skip drops the missed days, once fires the latest
    assert due_fires(s, None, now, started_at=utc(2026, 5, 1)) == []
    once = cron("0 7 * * *", misfire="once")
    assert due_fires(once, None, now, started_at=utc(2026, 5, 1)) == [utc(2026, 5, 8, 7)]


def test_a_stall_shorter_than_grace_loses_nothing_even_with_skip() -> None:
    # Given a scheduler that stalled 3 s (under the default 5 s grace)
    s = every(SECOND, misfire="skip")
    assert timedelta(seconds=5) == DEFAULT_GRACE
    # When it ticks again
    due = due_fires(s, T0, T0 + 3 * SECOND + 200 * MS, started_at=T0)
    # Then every fire of the stall is published, oldest first
    assert due == [T0 + SECOND, T0 + 2 * SECOND, T0 + 3 * SECOND]


def test_a_fire_exactly_grace_old_is_missed_one_microsecond_younger_is_on_time() -> None:
    s = every(timedelta(minutes=1), misfire="skip", grace=timedelta(seconds=2))
    fire = T0 + timedelta(minutes=1)
    assert due_fires(s, T0, fire + 2 * SECOND - US, started_at=T0) == [fire]
    assert due_fires(s, T0, fire + 2 * SECOND, started_at=T0) == []


def test_a_daily_fire_missed_by_hours_is_skipped_not_run_late() -> None:
    # Given a daily 07:00 job whose scheduler was down from 06:00 to 09:00
    s = cron("0 7 * * *")
    # When it comes back
    # Then with skip nothing runs (the latest fire is not always due: it is 2 h late)
    assert due_fires(s, utc(2026, 5, 1, 7), utc(2026, 5, 2, 9), started_at=T0) == []


# down from T0+10s to T0+15.3s, then one scheduler restarts with grace=1s
DOWN_LAST, RESTART = T0 + 10 * SECOND, T0 + 15 * SECOND + 300 * MS


@pytest.mark.parametrize(
    ("misfire", "max_catchup", "seconds"),
    [
        ("skip", 100, [15]),  # only the on-time fire (0.3 s old)
        ("once", 100, [14, 15]),  # one catch-up (the newest missed), then on time
        ("all", 100, [11, 12, 13, 14, 15]),  # every missed fire, oldest first
        ("all", 3, [13, 14, 15]),  # bounded: the newest are kept
        ("once", 1, [15]),  # no room left for the catch-up
    ],
)
def test_down_5s_then_restart_behaves_per_misfire_policy(
    misfire: Misfire, max_catchup: int, seconds: list[int]
) -> None:
    s = every(SECOND, misfire=misfire, max_catchup=max_catchup, grace=SECOND)
    due = due_fires(s, DOWN_LAST, RESTART, started_at=T0)
    assert due == [T0 + n * SECOND for n in seconds]


def run_scheduler(
    s: Schedule, start: datetime, end: datetime, ticks: list[timedelta]
) -> list[datetime]:
    """A fake-clock scheduler loop: tick, publish what is due, remember the last fire."""
    published: list[datetime] = []
    last: datetime | None = None
    now = start
    for step in ticks:
        now += step
        if now > end:
            break
        due = due_fires(s, last, now, started_at=start)
        published += due
        if due:
            last = due[-1]
    return published


@pytest.mark.parametrize("misfire", ["skip", "once", "all"])
def test_a_running_scheduler_ticking_every_100ms_publishes_each_fire_exactly_once(
    misfire: Misfire,
) -> None:
    # Given every=1s, a scheduler started at T0+0.37s, ticking every ~100 ms (jittered 50-150 ms)
    s = every(SECOND, misfire=misfire)
    start, end = T0 + 370 * MS, T0 + 20 * SECOND + 370 * MS
    rng = random.Random(5)
    ticks = [timedelta(milliseconds=rng.randint(50, 150)) for _ in range(1000)]
    # When it runs for 20 simulated seconds
    published = run_scheduler(s, start, end, ticks)
    # Then each fire time appears exactly once, with no gaps
    assert published == [T0 + n * SECOND for n in range(1, 21)]


def test_a_scheduler_that_stalls_under_grace_mid_run_still_has_no_gaps() -> None:
    s = every(SECOND, misfire="skip", grace=timedelta(seconds=5))
    ticks = [100 * MS] * 50 + [timedelta(seconds=4, milliseconds=30)] + [100 * MS] * 100
    published = run_scheduler(s, T0, T0 + 20 * SECOND, ticks)
    assert published == [T0 + n * SECOND for n in range(0, 20)]


def test_due_fires_rejects_naive_times() -> None:
    with pytest.raises(ArgumentError, match="now must be a timezone-aware"):
        due_fires(every(SECOND), T0, datetime(2026, 5, 1), started_at=T0)


# -- fire ids -----------------------------------------------------------------------------------
def test_a_fire_id_is_deterministic_and_round_trips() -> None:
    fire = utc(2026, 5, 1, 10, 0, 0) + 250 * MS
    task_id = fire_task_id("billing.nightly-report_2", fire)
    assert task_id == "sched.billing.nightly-report_2.1777629600250"
    assert task_id == fire_task_id("billing.nightly-report_2", fire.astimezone(BERLIN))
    assert parse_fire_task_id(task_id) == ("billing.nightly-report_2", fire)


def test_a_fire_id_for_a_name_ending_in_digits_still_parses() -> None:
    assert parse_fire_task_id(fire_task_id("job.5", T0)) == ("job.5", T0)


@pytest.mark.parametrize(
    "task_id",
    [
        "3f2c9a1e-0b1d-4a7c-9f00-6d2f6f7b8a11",
        "sched.x",
        "sched..1",
        "sched.bad name.1",
        "sched.x.1a",
    ],
)
def test_other_task_ids_are_not_fire_ids(task_id: str) -> None:
    assert parse_fire_task_id(task_id) is None


def test_a_fire_id_needs_a_valid_name_and_an_aware_time() -> None:
    with pytest.raises(ArgumentError):
        fire_task_id("bad name", T0)
    with pytest.raises(ArgumentError):
        fire_task_id("ok", datetime(2026, 5, 1))


# -- registering on an App ----------------------------------------------------------------------
def report(kind: str, days: int = 1) -> str:
    return f"{kind}:{days}"


def make_app() -> App:
    return App("unit", bootstrap_servers="127.0.0.1:1")


def test_periodic_registers_the_function_as_a_task_and_a_schedule_named_after_it() -> None:
    app = make_app()
    # When a function is declared periodic
    task = app.periodic(cron="0 7 * * *", tz="Europe/Berlin", args=("daily",), misfire="once")(
        report
    )
    # Then it is a task, callable as before, with a schedule of the same name
    assert app.tasks[task.name] is task
    assert task("x", 2) == "x:2"
    assert task.name.endswith("test_schedules.report")
    s = app.schedules[task.name]
    assert (s.task_name, s.cron, s.tz, s.args, s.misfire) == (
        task.name,
        "0 7 * * *",
        "Europe/Berlin",
        ("daily",),
        "once",
    )


def test_periodic_passes_queue_and_retry_to_the_task() -> None:
    app = make_app()

    @app.periodic(every=timedelta(seconds=30), name="tick", queue="cron")
    def tick() -> None:
        pass

    assert tick.queue == "cron"
    assert app.schedules["tick"].every == timedelta(seconds=30)
    assert app.schedules["tick"].task_name == tick.name


def test_schedule_sends_an_existing_task_under_several_names() -> None:
    # Given a registered task
    app = make_app()
    task = app.task(report)
    # When it is scheduled twice with different arguments (by task and by task name)
    daily = app.schedule(task, cron="0 7 * * *", name="daily", args=("daily",))
    weekly = app.schedule(
        task.name, cron="0 7 * * 1", name="weekly", kwargs={"kind": "w", "days": 7}
    )
    # Then both schedules are registered and point at the task
    assert app.schedules == {"daily": daily, "weekly": weekly}
    assert weekly.task_name == task.name
    assert weekly.kwargs == {"kind": "w", "days": 7}


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [((), {}), ((1,), {}), (("x",), {"days": "seven"}), (("x",), {"nope": 1})],
)
def test_periodic_args_that_do_not_fit_the_signature_fail_at_registration(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    app = make_app()
    with pytest.raises(ArgumentError, match="schedule 'bad'"):
        app.periodic(every=SECOND, name="bad", args=args, kwargs=kwargs)(report)
    # and nothing is left half-registered
    assert app.tasks == {}
    assert app.schedules == {}


def test_a_bad_periodic_schedule_registers_no_task() -> None:
    app = make_app()
    with pytest.raises(ConfigError, match="bad cron expression"):
        app.periodic(cron="every day", args=("x",))(report)
    assert app.tasks == {}


def test_a_schedule_name_used_twice_is_a_config_error() -> None:
    app = make_app()
    task = app.task(report)
    first = app.schedule(task, every=SECOND, name="dup", args=("a",))
    with pytest.raises(ConfigError, match="schedule name 'dup' is registered twice; pass name="):
        app.schedule(task, every=SECOND, name="dup", args=("b",))
    assert app.schedules == {"dup": first}


def test_only_this_apps_tasks_can_be_scheduled() -> None:
    app, other = make_app(), make_app()
    foreign = other.task(report)
    with pytest.raises(ConfigError, match="not a task of this app"):
        app.schedule(foreign, every=SECOND, args=("x",))
    with pytest.raises(ConfigError, match="not a task of this app"):
        app.schedule("no.such.task", every=SECOND)


def test_an_id_of_the_fire_id_shape_with_an_out_of_range_time_is_no_fire_id() -> None:
    from streamtasks.schedules import parse_fire_task_id

    assert parse_fire_task_id("sched.nightly.999999999999999") is None
    assert parse_fire_task_id("sched.nightly.-999999999999999") is None
    assert parse_fire_task_id("sched.nightly.0") is not None


def test_the_schedules_table_measures_distances_from_the_instant_it_computed() -> None:
    # A 1 s schedule's next fire is under a second away; drawing the table later than that
    # (a loaded machine: here 5 s later) must not turn it into "(... ago)"
    from unittest import mock

    from typer.testing import CliRunner

    from streamtasks.cli import cli
    from streamtasks.wire import envelope

    later = envelope.now_ms() + 5000
    with mock.patch.object(envelope, "now_ms", lambda: later):
        result = CliRunner().invoke(
            cli, ["schedules", "tests.integration.apps.periodic:app"], env={"COLUMNS": "200"}
        )
    assert result.exit_code == 0, result.output
    assert "(in " in result.output and " ago)" not in result.output, result.output
