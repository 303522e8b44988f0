"""A client's result listener keeps at most ``result_capacity`` ids and results in memory; a
handle it forgot still resolves, looked up from the results topic (real broker)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from streamtasks import App
from streamtasks.errors import TaskFailedError
from streamtasks.wire.envelope import ErrorInfo, ResultRecord, TaskStatus
from streamtasks.wire.topics import results_topic
from tests.integration.apps.basic import build
from tests.integration.conftest import run_burst_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@contextlib.contextmanager
def client(bootstrap: str, ns: str, capacity: int, mp: pytest.MonkeyPatch) -> Iterator[App]:
    """A connected client whose result listener remembers at most ``capacity`` tasks."""
    mp.setenv("STREAMTASKS_RESULT_CAPACITY", str(capacity))
    app: App = build(namespace=ns, bootstrap_servers=bootstrap)
    app.apply_topics()
    try:
        app.connect(timeout=15)
        yield app
    finally:
        app.close()


def test_handles_evicted_beyond_a_tiny_capacity_still_resolve_from_the_topic(
    kafka_bootstrap: str, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client whose listener remembers only 5 tasks
    with client(kafka_bootstrap, ns, 5, monkeypatch) as app:
        add = app.tasks["add"]
        # and one handle already waiting, which will be forgotten while it waits
        first = add.send(100, 1)
        got: list[int] = []
        waiter = threading.Thread(target=lambda: got.append(first.get(timeout=60)))
        waiter.start()
        # When 40 more tasks are sent and run (8 times the capacity)
        handles = add.send_many([(i, 1) for i in range(40)])
        assert app.flush(30) == 0
        run_burst_worker(kafka_bootstrap, ns)
        # Then every handle resolves to its own value, the forgotten ones by a lookup
        assert [h.get(timeout=30) for h in handles] == [i + 1 for i in range(40)]
        waiter.join(60)
        assert got == [101]
        listener = app.results_listener()
        assert listener.lookups >= 5 and listener.scans <= listener.lookups
        # and the listener's memory stayed within its bound
        assert len(listener._latest) <= 5 and len(listener._expected) <= 5
        # and the status of a forgotten handle is its real state, not PENDING
        assert handles[0].status.value == "SUCCESS"


def _result(app: App, task_id: str, status: TaskStatus, value: int | None = None) -> None:
    """Write a result record for ``task_id`` as a worker (or a redrive) would."""
    add = app.tasks["add"]
    rec = ResultRecord(
        task_id=task_id,
        task="add",
        status=status,
        attempts=1,
        created_at=0,
        value=None if value is None else add.encode_result(value),
        error=ErrorInfo("Redriven", "a newer record") if status is TaskStatus.DEAD else None,
    )
    app.producer.produce(
        results_topic(app.settings.namespace),
        key=task_id.encode(),
        value=app.codec.encode(app.result_schema, rec.to_avro()),
    )


def test_evicted_handles_awaited_in_order_are_served_by_few_scans_and_the_latest_record_wins(
    kafka_bootstrap: str, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client whose listener remembers only 50 tasks, and 400 tasks sent
    with client(kafka_bootstrap, ns, 50, monkeypatch) as app:
        handles = app.tasks["add"].send_many([(i, 1) for i in range(400)])
        ids = [h.id for h in handles]
        # and their results on the topic in send order (as workers that keep up write them),
        # except: task 20 is redriven later (a newer DEAD record at the end), task 30 is only
        # STARTED so far (its result is written at the end), and task 40 is STARTED until
        # after a scan handed it back to the listener
        for i, task_id in enumerate(ids):
            running = i in (30, 40)
            _result(app, task_id, TaskStatus.STARTED if running else TaskStatus.SUCCESS, i + 1)
            if i % 8 == 7:  # as workers write them: spread over time, not all in one ms
                assert app.flush(30) == 0
        _result(app, ids[20], TaskStatus.DEAD)
        _result(app, ids[30], TaskStatus.SUCCESS, 31)
        assert app.flush(30) == 0
        listener = app.results_listener()
        assert listener.wait_caught_up(30)
        followed = threading.Event()

        def finish_40_once_followed() -> None:
            with listener._cond:  # the listener follows 40 again: a scan brought it back
                if listener._cond.wait_for(lambda: ids[40] in listener._expected, timeout=30):
                    followed.set()
            _result(app, ids[40], TaskStatus.SUCCESS, 41)
            app.flush(30)

        finisher = threading.Thread(target=finish_40_once_followed)
        finisher.start()
        # When every handle is awaited in send order
        values: list[int | str] = []
        for h in handles:
            try:
                values.append(h.get(timeout=30))
            except TaskFailedError as exc:
                values.append(exc.error_type)
        finisher.join(30)
        # Then each resolves to its latest record: the redriven one to its newer DEAD record,
        # 30 to the result written after the scan's first sight of it, 40 to the one written
        # after the scan handed it over (the listener followed it)
        assert values == [i + 1 if i != 20 else "Redriven" for i in range(400)]
        assert followed.is_set()
        # and the 350 forgotten handles were served by far fewer scans of the topic
        assert 1 <= listener.scans <= 350 // 5, (listener.scans, listener.lookups)
        # and the listener's memory stayed within its bound
        assert len(listener._latest) <= 50 and len(listener._expected) <= 50
