"""The pure half of replay: times, the selection rule, replayed events, the progress fold."""

from __future__ import annotations

import json

import pytest

from streamtasks.errors import ConfigError
from streamtasks.ops.replayspec import (
    ReplaySpec,
    fold_progress,
    parse_statuses,
    parse_time,
    replay_headers,
    replayed_envelope,
)
from streamtasks.wire.envelope import Envelope, ErrorInfo, TaskStatus

NOW = 1_796_000_000_000  # 2026-11-30T...Z, epoch ms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("now", NOW),
        ("-2h", NOW - 7_200_000),
        ("-30m", NOW - 1_800_000),
        ("-90s", NOW - 90_000),
        ("-1.5d", NOW - 129_600_000),
        ("+10s", NOW + 10_000),
        ("-250ms", NOW - 250),
        ("2026-12-01T09:00:00Z", 1_796_115_600_000),
        ("2026-12-01T09:00:00", 1_796_115_600_000),  # no offset: UTC
        ("2026-12-01T10:00:00+01:00", 1_796_115_600_000),
        ("1796115600123", 1_796_115_600_123),  # epoch ms
    ],
)
def test_parse_time_reads_relative_iso_and_epoch_ms(text: str, expected: int) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "-2 hours", "12", ""])
def test_parse_time_rejects_what_it_cannot_read_with_a_fix_it_message(text: str) -> None:
    with pytest.raises(ConfigError, match="ISO-8601"):
        parse_time(text, NOW)


def test_parse_statuses_accepts_a_comma_list_in_any_case_and_rejects_unknown_names() -> None:
    assert parse_statuses("failure, DEAD") == {TaskStatus.FAILURE, TaskStatus.DEAD}
    assert parse_statuses(None) is None and parse_statuses("") is None
    with pytest.raises(ConfigError, match="unknown status 'BROKEN'"):
        parse_statuses("FAILURE,BROKEN")


def spec(**kw: object) -> ReplaySpec:
    base: dict[str, object] = {
        "replay_id": "rp-1",
        "queue": "q",
        "start_ms": 1000,
        "end_ms": 2000,
        "created_ms": 5000,
    }
    return ReplaySpec(**{**base, **kw})  # type: ignore[arg-type]


def test_the_range_includes_its_start_and_excludes_its_end() -> None:
    s = spec()
    assert [s.in_range(t) for t in (999, 1000, 1999, 2000)] == [False, True, True, False]


def test_an_empty_or_reversed_range_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty time range"):
        spec(start_ms=2000, end_ms=2000)


def test_selects_applies_every_filter() -> None:
    s = spec(tasks=frozenset({"a"}), key=b"k", statuses=frozenset({TaskStatus.FAILURE}))
    assert s.selects(1500, "a", b"k", TaskStatus.FAILURE)
    assert not s.selects(1500, "b", b"k", TaskStatus.FAILURE)
    assert not s.selects(1500, "a", b"other", TaskStatus.FAILURE)
    assert not s.selects(1500, "a", b"k", TaskStatus.SUCCESS)
    assert not s.selects(2000, "a", b"k", TaskStatus.FAILURE)
    assert spec().selects(1500, "anything", None, TaskStatus.PENDING)


def test_a_spec_survives_its_json_round_trip() -> None:
    s = spec(tasks=frozenset({"a", "b"}), key=b"k\xff", statuses=frozenset({TaskStatus.DEAD}))
    assert ReplaySpec.from_json(s.to_json()) == s


def test_a_replayed_event_is_a_fresh_first_attempt_under_the_same_or_a_new_id() -> None:
    env = Envelope(
        id="t1",
        task="a",
        queue="q",
        args=b"x",
        attempt=3,
        eta=5,
        expires=6,
        last_error=ErrorInfo("E", "m"),
        continuation=(b"next",),
    )
    again = replayed_envelope(env, None)
    assert (again.id, again.attempt, again.eta, again.expires, again.last_error) == (
        "t1",
        1,
        None,
        None,
        None,
    )
    assert again.continuation == (b"next",) and again.args == b"x"
    assert replayed_envelope(env, "t1.r-1").id == "t1.r-1"


def test_replay_headers_keep_user_headers_and_replace_task_and_replay_markers() -> None:
    env = Envelope(id="new", task="a", queue="q", args=b"")
    original = [
        ("st-task", b"a"),
        ("st-id", b"old"),
        ("st-attempt", b"4"),
        ("st-not-before", b"1"),
        ("st-replay", b"rp-0"),
        ("tenant", b"acme"),
    ]
    out = replay_headers(original, env, "rp-1", "t:0:7", "old")
    assert out == [
        ("st-task", b"a"),
        ("st-id", b"new"),
        ("st-attempt", b"1"),
        ("tenant", b"acme"),
        ("st-replay", b"rp-1"),
        ("st-replay-origin", b"t:0:7"),
        ("st-replay-of", b"old"),
    ]


def test_fold_progress_takes_the_latest_position_per_partition_of_one_replay_only() -> None:
    s = spec()
    records = [
        (b"rp-1", s.to_json()),
        (b"rp-1/0", json.dumps({"next": 10}).encode()),
        (b"rp-1/0", json.dumps({"next": 25}).encode()),
        (b"rp-1/3", json.dumps({"next": 4}).encode()),
        (b"rp-10/0", json.dumps({"next": 99}).encode()),  # another replay id
        (b"rp-1/3", None),  # tombstone
        (None, b"junk"),
    ]
    progress = fold_progress("rp-1", records)
    assert progress.spec == s
    assert progress.positions == {0: 25}
    assert not progress.finished
    done = fold_progress("rp-1", [*records, (b"rp-1/done", b"{}")])
    assert done.finished
    assert fold_progress("rp-2", records).spec is None
