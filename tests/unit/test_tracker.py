"""The offset tracker: only the unbroken prefix of finished offsets is committable."""

from __future__ import annotations

import random

from streamtasks.worker.tracker import OffsetTracker


def test_nothing_received_nothing_committable() -> None:
    assert OffsetTracker().committable() is None


def test_out_of_order_completions_commit_only_the_unbroken_prefix() -> None:
    # Given offsets 10..14 received
    t = OffsetTracker()
    for o in range(10, 15):
        assert t.add(o)
    # When 11, 12 and 14 finish but 10 does not
    for o in (11, 12, 14):
        assert t.finish(o)
    # Then nothing is committable
    assert t.committable() is None
    # When 10 finishes, the run 10..12 is committable: position 13
    t.finish(10)
    assert t.committable() == 13
    assert t.unfinished == 1
    # When 13 finishes, everything up to 14 is: position 15
    t.finish(13)
    assert t.committable() == 15
    assert t.pending == 0


def test_gaps_in_offsets_do_not_block() -> None:
    # Given offsets with gaps (compaction, transaction markers)
    t = OffsetTracker()
    for o in (3, 7, 8, 20):
        t.add(o)
    for o in (3, 7, 8, 20):
        t.finish(o)
    assert t.committable() == 21


def test_position_is_kept_when_nothing_new_finishes() -> None:
    t = OffsetTracker()
    t.add(0)
    t.add(1)
    t.finish(0)
    assert t.committable() == 1
    assert t.committable() == 1


def test_redelivery_and_unknown_finish_are_refused() -> None:
    t = OffsetTracker()
    t.add(5)
    assert not t.add(5)
    assert not t.add(4)
    assert not t.finish(9)
    assert t.finish(5)
    assert not t.finish(5)  # twice
    assert t.committable() == 6
    assert not t.finish(5)  # already committed


def test_random_completion_order_never_commits_past_unfinished() -> None:
    # Property: for any completion order, the committable position never passes the smallest
    # unfinished offset, and reaches the end once all are finished.
    rng = random.Random(7)
    for _ in range(200):
        offsets = sorted(rng.sample(range(1000), 50))
        t = OffsetTracker()
        for o in offsets:
            t.add(o)
            assert not t.add(o)  # a re-delivery counts for nothing
        assert t.unfinished == len(offsets)
        order = offsets[:]
        rng.shuffle(order)
        finished: set[int] = set()
        for o in order:
            t.finish(o)
            assert not t.finish(o)  # nor does a second finish
            finished.add(o)
            pos = t.committable()
            unfinished = [x for x in offsets if x not in finished]
            assert t.unfinished == len(unfinished)  # the kept count, recounted
            if unfinished:
                assert pos is None or pos <= unfinished[0]
            prefix = [x for x in offsets if x < (unfinished[0] if unfinished else 10**9)]
            if prefix:
                assert pos == prefix[-1] + 1
        assert t.committable() == offsets[-1] + 1


def test_oldest_unfinished_is_the_offset_the_commit_waits_for() -> None:
    t = OffsetTracker()
    assert t.oldest_unfinished() is None
    for o in (3, 4, 5):
        t.add(o)
    t.finish(3)
    t.finish(5)
    assert t.oldest_unfinished() == 4
    t.finish(4)
    assert t.oldest_unfinished() is None
