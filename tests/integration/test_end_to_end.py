"""Send from this process, run in worker subprocesses, await results here (real broker)."""

from __future__ import annotations

import gc
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest

from streamtasks import App, ResultTimeoutError, TaskFailedError, TaskStatus
from streamtasks.testing import consume_all
from streamtasks.wire.topics import results_topic
from streamtasks.worker import Worker
from streamtasks.worker.gctune import GEN0_THRESHOLD
from streamtasks.worker.hooks import WorkerHooks
from streamtasks.worker.outcomes import Record
from tests.integration.apps.basic import Item, Shape, Summary
from tests.integration.conftest import APP_SPEC, StartWorkers

pytestmark = pytest.mark.integration


def test_a_task_sent_here_runs_in_a_worker_process_and_get_returns_its_value(
    app: App, start_workers: StartWorkers
) -> None:
    # Given a worker process
    start_workers(1)
    # When a task is sent from this process
    res = app.tasks["add"].send(2, 40)
    # Then .get() returns the value the worker computed
    assert res.get(timeout=30) == 42
    assert res.status is TaskStatus.SUCCESS
    rec = res.record()
    assert rec is not None and rec.attempts == 1 and rec.worker_id


def test_dataclass_enum_datetime_arguments_and_results_round_trip(
    app: App, start_workers: StartWorkers
) -> None:
    start_workers(1)
    made = datetime(2024, 5, 1, 12, 0, tzinfo=timezone(timedelta(hours=2)))
    item = Item("box", Shape.SQUARE, 3.0, ["a", "b", "a"], made)
    res = app.tasks["summarize"].send(item, factor=2.0)
    assert res.get(timeout=30) == Summary("box@2024", 36.0, {"a": 2, "b": 1})


def test_a_failing_tasks_error_type_and_message_reach_get(
    app: App, start_workers: StartWorkers
) -> None:
    start_workers(1)
    res = app.tasks["fail"].send("the disk is full")
    with pytest.raises(TaskFailedError) as info:
        res.get(timeout=30)
    assert info.value.error_type == "ValueError"
    assert info.value.error_message == "the disk is full"
    assert "ValueError: the disk is full" in str(info.value)
    assert (
        info.value.remote_traceback and "raise ValueError(message)" in info.value.remote_traceback
    )
    assert res.status is TaskStatus.FAILURE


def test_5000_tasks_across_2_worker_processes_all_complete(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    # Given 2 worker processes in the group
    start_workers(2)
    # When 5,000 tasks are sent
    handles = [app.tasks["add"].send(i, 1) for i in range(5000)]
    # Then every one completes with its own value, and both workers did part of the work
    values = [h.get(timeout=120) for h in handles]
    assert values == [i + 1 for i in range(5000)]
    workers = {h.record().worker_id for h in handles}  # type: ignore[union-attr]
    assert len(workers) == 2
    # And the results topic holds exactly one result per task (no duplicates without faults)
    records = consume_all(kafka_bootstrap, results_topic(ns), expect=5000, timeout=30)
    assert len({m.key() for m in records}) == 5000


def test_a_result_that_arrived_before_get_is_still_found(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    start_workers(1)
    res = app.tasks["add"].send(1, 1)
    app.flush()
    # the result is on the topic before anyone waits for it
    consume_all(kafka_bootstrap, results_topic(ns), expect=1, timeout=30)
    assert res.get(timeout=10) == 2


def test_a_get_that_times_out_says_what_it_saw(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    # Given a task no worker runs (none is started yet)
    res = app.tasks["add"].send(1, 2)
    assert app.flush(30) == 0
    assert app.results_listener().wait_caught_up(30)
    # When get() times out, its error names the state it saw and how far results were read
    with pytest.raises(ResultTimeoutError) as err:
        res.get(timeout=0.5)
    text = str(err.value)
    assert res.id in text and "no record of it read yet" in text, text
    assert f"{results_topic(ns)} read to its end" in text, text
    # And once a worker ran it, the same handle resolves
    start_workers(1)
    assert res.get(timeout=30) == 3


def test_a_handle_made_from_an_id_in_another_app_instance_finds_the_result(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    from tests.integration.apps.basic import build

    start_workers(1)
    task_id = app.tasks["add"].send(20, 3).id
    app.tasks["add"].send(0, 0).get(timeout=30)  # the worker is running; wait for one
    other = build(namespace=ns, bootstrap_servers=kafka_bootstrap)  # like another process
    try:
        assert other.AsyncResult(task_id).get(timeout=30) == 23
    finally:
        other.close()


def test_expired_tasks_are_not_run_and_say_expired(app: App, start_workers: StartWorkers) -> None:
    # Given a task that expired before any worker could pick it up
    res = app.tasks["add"].apply_async((1, 2), expires=datetime.now(UTC) - timedelta(seconds=1))
    start_workers(1)
    # Then it is not run, and its result says EXPIRED
    with pytest.raises(TaskFailedError) as info:
        res.get(timeout=30)
    assert info.value.error_type == "TaskExpired"
    assert res.status is TaskStatus.EXPIRED


@pytest.mark.slow
def test_10000_results_are_awaited_through_one_listener(
    app: App, start_workers: StartWorkers
) -> None:
    # Given 10,000 tasks sent from this process and 2 workers
    start_workers(2)
    handles = [app.tasks["add"].send(i, 0) for i in range(10_000)]
    # When some results are on the topic before anyone waits for them
    handles[-1].get(timeout=120)
    # Then every handle gets its value, all served by the one result listener of this app
    assert [h.get(timeout=120) for h in handles] == list(range(10_000))
    assert app._listener is not None and app._history is None
    mine = f"streamtasks-results-{results_topic(app.settings.namespace)}"
    assert [t.name for t in threading.enumerate()].count(mine) == 1


def test_a_worker_tunes_the_collector_while_it_runs_and_leaves_it_as_it_was(app: App) -> None:
    # Given this process's collector settings, and a hook that notes them as tasks finish
    before = gc.get_threshold()
    seen: list[tuple[tuple[int, int, int], int]] = []

    class Probe(WorkerHooks):
        def on_finished(self, record: Record, outcome: str) -> None:
            seen.append((gc.get_threshold(), gc.get_freeze_count()))

    # When a worker runs tasks in this process, with the default tuning and without it
    handles = [app.tasks["add"].send(i, 1) for i in range(3)]
    assert app.flush(30) == 0
    Worker(app, hooks=[Probe()], app_spec=APP_SPEC).run(install_signal_handlers=False, burst=True)
    assert [h.get(timeout=10) for h in handles] == [1, 2, 3]
    tuned, seen[:] = list(seen), []
    after = (gc.get_threshold(), gc.get_freeze_count())
    app.tasks["add"].send(5, 5)
    assert app.flush(30) == 0
    Worker(app, hooks=[Probe()], app_spec=APP_SPEC, gc_tuning=False).run(
        install_signal_handlers=False, burst=True
    )
    # Then the tuned run froze the start-up heap and raised the first threshold only
    assert len(tuned) == 3 and all(
        t == (max(before[0], GEN0_THRESHOLD), *before[1:]) and frozen > 0 for t, frozen in tuned
    ), tuned
    # and each run left the collector as it found it; the untuned one never touched it
    assert after == (before, 0)
    assert seen == [(before, 0)] and gc.get_threshold() == before
