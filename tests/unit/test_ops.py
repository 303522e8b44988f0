"""Pure parts of status, offsets reset and burst mode."""

from __future__ import annotations

import pytest

from streamtasks.errors import ConfigError
from streamtasks.ops.offsets import GroupInfo, MemberInfo, ResetTarget, new_offset, refusal
from streamtasks.ops.status import age_seconds, lag_of, pid_of, split_due
from streamtasks.worker.burst import DrainWatch


def test_lag_counts_from_the_first_unconsumed_record_to_the_end() -> None:
    assert lag_of(10, 15) == 5
    assert lag_of(15, 15) == 0
    assert lag_of(20, 15) == 0  # a committed offset beyond a stale end is no negative lag


def test_lag_seconds_is_the_age_of_the_oldest_unconsumed_record() -> None:
    assert age_seconds(1_000, 6_500) == 5.5
    assert age_seconds(None, 6_500) == 0.0
    assert age_seconds(7_000, 6_500) == 0.0  # clock skew: never negative


def test_split_due_by_not_before() -> None:
    assert split_due([None, 100, 200, 300], now=200) == (3, 1)


def test_pid_of_reads_a_worker_client_id_only() -> None:
    assert pid_of("web-1.example-4242-a1b2c3") == 4242
    assert pid_of("rdkafka") is None


@pytest.mark.parametrize(
    ("target", "current", "expected"),
    [
        (ResetTarget("earliest"), 7, 2),
        (ResetTarget("latest"), 7, 20),
        (ResetTarget("datetime", time="x"), 7, 11),
        (ResetTarget("shift", shift=-3), 7, 4),
        (ResetTarget("shift", shift=-30), 7, 2),  # clamped to the first record
        (ResetTarget("shift", shift=30), 7, 20),  # ... and to the end
        (ResetTarget("shift", shift=1), None, 3),  # never committed: from the first record
    ],
)
def test_new_offset_per_target_stays_within_the_partition(
    target: ResetTarget, current: int | None, expected: int
) -> None:
    assert new_offset(target, current, low=2, end=20, at_time=11) == expected


def test_exactly_one_reset_target_must_be_given() -> None:
    assert ResetTarget.of(to_latest=True) == ResetTarget("latest")
    assert ResetTarget.of(shift_by=-5) == ResetTarget("shift", shift=-5)
    for bad in ({}, {"to_latest": True, "to_earliest": True}):
        with pytest.raises(ConfigError, match="exactly one"):
            ResetTarget.of(**bad)  # type: ignore[arg-type]


def test_a_reset_is_refused_with_members_or_in_a_live_state() -> None:
    member = MemberInfo("m1", "host-1-abcdef", "/10.0.0.1", ["t[0]"])
    assert refusal(GroupInfo("g", "EMPTY", [])) is None
    assert refusal(GroupInfo("g", "UNKNOWN", [])) is None
    reason = refusal(GroupInfo("g", "STABLE", [member]))
    assert reason is not None and "host-1-abcdef" in reason and "stop its workers" in reason
    # a broker that reports the state but lists no members (seen on Tansu)
    assert refusal(GroupInfo("g", "STABLE", [])) is not None


def test_drain_watch_waits_for_an_end_beyond_every_known_record() -> None:
    w = DrainWatch()
    assert not w.drained()  # nothing assigned yet
    a, b = ("t", 0), ("t", 1)
    w.assigned([a, b])
    w.at_end(a, 5)
    assert not w.drained()  # b not read to its end
    w.at_end(b, 0)
    assert w.drained()
    w.seen(a, 5)  # the worker produced a record at offset 5 of a (a chain step)
    assert not w.drained()  # the end reported before it does not count
    w.at_end(a, 6)
    assert w.drained()
    w.forget([b])
    w.seen(b, 9)
    assert w.drained()  # no longer ours
