"""The hooks seam: only overriding hooks are called, errors are contained, stats count."""

from __future__ import annotations

from collections.abc import Sequence

from streamtasks.worker import WorkerHooks, WorkerStats
from streamtasks.worker.hooks import HookSet
from streamtasks.worker.outcomes import Record

REC = Record("t", 0, 7, b"k", b"v", [])


class Seen(WorkerHooks):
    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def on_received(self, record: Record) -> None:
        self.calls.append(("received", record.offset))

    def on_finished(self, record: Record, outcome: str) -> None:
        self.calls.append(("finished", outcome))

    def on_retried(self, record: Record) -> None:
        self.calls.append(("retried",))

    def on_revoked(self, partitions: Sequence[tuple[str, int]], *, lost: bool) -> None:
        self.calls.append(("revoked", tuple(partitions), lost))


class Broken(WorkerHooks):
    def on_received(self, record: Record) -> None:
        raise RuntimeError("hook bug")


def test_only_overriding_hooks_are_called() -> None:
    seen = Seen()
    hooks = HookSet([WorkerHooks(), seen])
    hooks.received(REC)
    hooks.started(REC)
    hooks.finished(REC, "retry")
    hooks.revoked([("t", 0)], lost=True)
    assert seen.calls == [
        ("received", 7),
        ("retried",),
        ("finished", "retry"),
        ("revoked", (("t", 0),), True),
    ]


def test_a_failing_hook_is_contained_and_the_next_still_runs() -> None:
    seen = Seen()
    hooks = HookSet([Broken(), seen])
    hooks.received(REC)
    assert seen.calls == [("received", 7)]


def test_worker_stats_counts_like_before() -> None:
    stats = WorkerStats()
    hooks = HookSet([stats])
    for _ in range(3):
        hooks.received(REC)
    for outcome in ("success", "failure", "retry", "dead", "expired", "skipped", "revoked"):
        hooks.finished(REC, outcome)
    hooks.abandoned(2)
    hooks.abandoned(0)
    hooks.chord_joined(REC)
    assert stats == WorkerStats(
        received=3,
        succeeded=1,
        failed=1,
        retried=1,
        expired=1,
        dead_lettered=1,
        skipped=1,
        revoked=1,
        abandoned=2,
        chords_joined=1,
    )
    assert set(vars(stats)) == {
        "received",
        "succeeded",
        "failed",
        "retried",
        "expired",
        "dead_lettered",
        "skipped",
        "revoked",
        "abandoned",
        "chords_joined",
    }
