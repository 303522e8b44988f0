"""The worker's collector tuning: applied while workers run, everything as before after."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streamtasks.worker.gctune import GEN0_THRESHOLD, tuned_gc


@pytest.fixture(autouse=True)
def _restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.set_threshold(*before)
    gc.unfreeze()


def test_while_a_worker_runs_the_start_up_heap_is_frozen_and_young_passes_are_rarer() -> None:
    # Given the collector as a process has it
    gc.set_threshold(700, 10, 10)
    # When a worker's run is inside the tuning
    with tuned_gc():
        # Then what existed is frozen, the first threshold raised, the others kept, and the
        # collector still on
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GEN0_THRESHOLD, 10, 10)
        assert gc.isenabled()
    # And after it, thresholds and heap are as before
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_a_larger_threshold_a_process_chose_is_kept() -> None:
    gc.set_threshold(50_000, 20, 30)
    with tuned_gc():
        assert gc.get_threshold() == (50_000, 20, 30)
    assert gc.get_threshold() == (50_000, 20, 30)


def test_overlapping_workers_share_one_tuning_undone_when_the_last_stops() -> None:
    gc.set_threshold(700, 10, 10)
    first, second = tuned_gc(), tuned_gc()
    first.__enter__()
    second.__enter__()
    # the first stops while the second still runs: the tuning stays
    first.__exit__(None, None, None)
    assert gc.get_threshold()[0] == GEN0_THRESHOLD and gc.get_freeze_count() > 0
    second.__exit__(None, None, None)
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_an_error_in_the_run_still_undoes_the_tuning() -> None:
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), tuned_gc():
        raise RuntimeError("the worker failed")
    assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_disabled_it_leaves_the_collector_alone() -> None:
    gc.set_threshold(700, 10, 10)
    with tuned_gc(enabled=False):
        assert gc.get_threshold() == (700, 10, 10) and gc.get_freeze_count() == 0


def test_cyclic_garbage_made_while_tuned_is_still_collected() -> None:
    import weakref

    class Node:
        other: object

    with tuned_gc():
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        gc.collect()
        assert ref() is None
