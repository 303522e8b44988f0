"""The dashboard's rolling aggregates: bounded, windowed, and the lag banner's rule."""

from __future__ import annotations

from streamtasks.dashboard import aggregates as agg_mod
from streamtasks.dashboard.aggregates import (
    HOUR_MS,
    MINUTE_MS,
    Aggregates,
    LagSample,
    TimelineEntry,
    lag_growing,
)
from streamtasks.wire.envelope import ErrorInfo, ResultRecord, TaskStatus

NOW = 1_700_000_000_000


def result(i: int, status: TaskStatus, at: int, error: str | None = None) -> ResultRecord:
    return ResultRecord(
        task_id=f"t{i}",
        task="add",
        status=status,
        attempts=1,
        created_at=at - 10,
        finished_at=at,
        error=ErrorInfo(error, f"boom {i}") if error else None,
    )


def test_finished_and_failed_are_counted_per_minute_within_the_hour() -> None:
    # Given results in this minute, ten minutes ago and two hours ago
    agg = Aggregates()
    agg.record_result(result(1, TaskStatus.SUCCESS, NOW), "q", NOW)
    agg.record_result(result(2, TaskStatus.DEAD, NOW, "ValueError"), "q", NOW)
    agg.record_result(result(3, TaskStatus.SUCCESS, NOW - 10 * MINUTE_MS), "q", NOW)
    agg.record_result(result(4, TaskStatus.SUCCESS, NOW - 2 * HOUR_MS), "q", NOW)
    agg.record_result(result(5, TaskStatus.RETRY, NOW), "q", NOW)  # not final: not counted
    # When the last hour is viewed
    buckets = agg.minutes_view("q", NOW)
    # Then 60 minutes, and only the three final results of the hour are in them
    assert len(buckets) == 60
    assert buckets[-1].finished == 2 and buckets[-1].failed == 1
    assert buckets[-11].finished == 1
    assert agg_mod.totals(buckets) == (3, 1)


def test_old_minutes_are_dropped_as_time_moves_on() -> None:
    agg = Aggregates()
    agg.record_result(result(1, TaskStatus.SUCCESS, NOW), "q", NOW)
    assert agg_mod.totals(agg.minutes_view("q", NOW + 2 * HOUR_MS)) == (0, 0)
    assert agg.sizes()["minutes"] == 0


def test_failures_are_grouped_by_task_and_error_type() -> None:
    agg = Aggregates()
    for i in range(3):
        agg.record_result(result(i, TaskStatus.FAILURE, NOW + i, "ValueError"), "q", NOW)
    agg.record_result(result(9, TaskStatus.DEAD, NOW, "KeyError"), "q", NOW)
    groups = agg.failures_view()
    assert [(g.task, g.error_type, g.count) for g in groups] == [
        ("add", "ValueError", 3),
        ("add", "KeyError", 1),
    ]
    assert groups[0].last_task_id == "t2" and groups[0].last_message == "boom 2"


def test_memory_stays_bounded_whatever_the_traffic() -> None:
    # Given far more tasks than the dashboard keeps
    agg = Aggregates()
    n = agg_mod.TIMELINES + agg_mod.RECENT_TASKS + 500
    for i in range(n):
        agg.record_result(result(i, TaskStatus.SUCCESS, NOW), "q", NOW)
        agg.record_event(f"t{i}", TimelineEntry("STARTED", NOW, 1, "w", ""))
        agg.record_args(f"t{i}", "add", b"x")
    for i in range(agg_mod.EVENTS_PER_TASK * 2):
        agg.record_event("t-busy", TimelineEntry("RETRIED", NOW + i, i, "w", ""))
    # Then only the bounded windows are held, the newest kept
    sizes = agg.sizes()
    assert sizes["recent"] == agg_mod.RECENT_TASKS
    assert sizes["timelines"] == agg_mod.TIMELINES
    assert sizes["args"] == agg_mod.ARGS_KEPT
    assert len(agg.timeline("t-busy")) == agg_mod.EVENTS_PER_TASK
    assert agg.timeline("t0") == [] and agg.args_of(f"t{n - 1}") == ("add", b"x")


def test_recent_tasks_filter_by_name_and_status_newest_first() -> None:
    agg = Aggregates()
    agg.record_result(result(1, TaskStatus.SUCCESS, NOW), "q", NOW)
    agg.record_result(result(2, TaskStatus.DEAD, NOW + 5, "E"), "q", NOW)
    assert [r.task_id for r in agg.recent_view()] == ["t2", "t1"]
    assert [r.task_id for r in agg.recent_view(status="dead")] == ["t2"]
    assert agg.recent_view(task="other") == []


def test_lag_alarm_needs_minutes_of_growth() -> None:
    growing = [LagSample(NOW - s * 1000, 400.0 - s) for s in range(240, -1, -10)]
    assert lag_growing(growing, NOW)
    assert not lag_growing(growing[-5:], NOW)  # 40 s of growth is not several minutes
    dipped = [*growing[:10], LagSample(growing[10].at_ms, 0.0), *growing[11:]]
    assert not lag_growing(dipped, NOW)  # it caught up in between
    flat = [LagSample(s.at_ms, 5.0) for s in growing]
    assert not lag_growing(flat, NOW)


def test_a_superseded_result_is_taken_back_so_counts_are_of_latest_states() -> None:
    # Given a task that went DEAD and, redriven, then succeeded
    agg = Aggregates()
    dead = result(1, TaskStatus.DEAD, NOW - 5, "FileNotFoundError")
    agg.record_result(dead, "q", NOW)
    agg.record_result(result(1, TaskStatus.SUCCESS, NOW), "q", NOW, previous=dead)
    # Then it counts once, as a success, and is no longer among the failures
    assert agg_mod.totals(agg.minutes_view("q", NOW)) == (1, 0)
    assert agg.failures_view() == []
