"""Partition state alone: admit / complete / forget, generations, key queues, dirty marks."""

from __future__ import annotations

from streamtasks.worker.partitions import Partitions

A = ("tasks", 0)
B = ("tasks", 1)


def test_admit_only_assigned_partitions_and_each_offset_once() -> None:
    parts: Partitions[str] = Partitions()
    assert parts.admit(A, 0) is None  # not assigned
    parts.assign(A)
    assert parts.admit(A, 0) is not None
    assert parts.admit(A, 0) is None  # a re-delivery already in progress
    assert parts.admit(A, 1) is not None
    assert parts.unfinished([A]) == 2
    assert parts.unfinished([B]) == 0


def test_complete_marks_dirty_and_commits_only_the_unbroken_run() -> None:
    parts: Partitions[str] = Partitions()
    parts.assign(A)
    for offset in (5, 6, 7):
        parts.admit(A, offset)
    assert parts.take_dirty() == set()
    tracker = parts.complete(A, 6)
    assert parts.take_dirty() == {A}
    assert tracker.committable() is None  # 5 unfinished: nothing committable yet
    parts.complete(A, 6)  # finished twice: not marked again
    assert parts.take_dirty() == set()
    parts.complete(A, 5)
    assert parts.take_dirty() == {A}
    assert tracker.committable() == 7  # never beyond the unfinished 7
    assert parts.take_dirty() == set()  # taken
    assert parts.unfinished([A]) == 1


def test_take_dirty_of_some_partitions_leaves_the_others_marked() -> None:
    parts: Partitions[str] = Partitions()
    for tp in (A, B):
        parts.assign(tp)
        parts.admit(tp, 0)
        parts.complete(tp, 0)
    assert parts.take_dirty([A]) == {A}
    assert parts.dirty == {B}


def test_a_new_assignment_is_a_new_generation() -> None:
    parts: Partitions[str] = Partitions()
    first = parts.assign(A)
    assert parts.current(A, first)
    parts.forget([A])
    assert not parts.current(A, first)
    second = parts.assign(A)
    assert second != first
    assert parts.current(A, second) and not parts.current(A, first)
    assert parts.generation(A) == second


def test_an_untracked_partition_has_a_generation_but_no_tracker() -> None:
    parts: Partitions[str] = Partitions()
    chords = ("chords", 0)
    generation = parts.assign(chords, tracked=False)
    assert parts.current(chords, generation)
    assert chords not in parts.trackers
    assert parts.admit(chords, 0) is None


def test_key_queue_runs_one_job_per_key_in_order() -> None:
    parts: Partitions[str] = Partitions()
    parts.assign(A)
    assert not parts.queue_behind_key(A, b"k", "j0")  # runs now; k busy
    assert parts.queue_behind_key(A, b"k", "j1")
    assert parts.queue_behind_key(A, b"k", "j2")
    assert not parts.queue_behind_key(A, b"other", "x0")
    assert not parts.queue_behind_key(B, b"k", "b0")  # keys are per partition
    assert not parts.queue_behind_key(A, None, "n0")  # no key: never queued
    assert parts.waiting(A) == 2
    assert parts.next_of_key(A, b"k") == "j1"
    assert parts.next_of_key(A, b"k") == "j2"
    assert parts.next_of_key(A, b"k") is None  # k no longer busy
    assert not parts.queue_behind_key(A, b"k", "j3")
    assert parts.next_of_key(A, None) is None


def test_a_key_stays_busy_while_its_last_queued_job_runs() -> None:
    parts: Partitions[str] = Partitions()
    parts.assign(A)
    assert not parts.queue_behind_key(A, b"k", "j0")
    assert parts.waiting(A) == 0  # busy, nothing queued
    assert parts.queue_behind_key(A, b"k", "j1")
    assert parts.next_of_key(A, b"k") == "j1"  # j0 done: j1 runs, its queue now empty
    # a record of k that arrives while j1 runs waits for j1, not beside it
    assert parts.queue_behind_key(A, b"k", "j2")
    assert parts.next_of_key(A, b"k") == "j2"
    assert parts.next_of_key(A, b"k") is None
    assert not parts.queue_behind_key(A, b"k", "j3")
    # a busy key with nothing queued is dropped with its partition, counting no job
    assert parts.forget([A]) == 0


def test_forget_drops_everything_and_counts_queued_jobs() -> None:
    parts: Partitions[str] = Partitions()
    for tp in (A, B):
        parts.assign(tp)
        parts.admit(tp, 0)
        parts.admit(tp, 1)
        parts.complete(tp, 0)
        parts.queue_behind_key(tp, b"k", "running")
        parts.queue_behind_key(tp, b"k", "queued")
    assert parts.forget([A]) == 1
    assert A not in parts.trackers and A not in parts.dirty
    assert parts.waiting(A) == 0
    assert parts.admit(A, 2) is None
    assert parts.waiting(B) == 1 and B in parts.dirty  # the other partition is untouched
    assert parts.forget([A]) == 0
