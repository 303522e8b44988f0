"""The result store on a real broker: sync, rebuild, `streamtasks result` after restarts, TTL."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from confluent_kafka import Message

from streamtasks import App, AsyncResult, TaskStatus
from streamtasks.errors import BrokerError
from streamtasks.ops.store import ResultStore
from streamtasks.testing import consume_all, unique_name
from tests.integration.conftest import APP_SPEC, StartWorkers, run_cli

pytestmark = pytest.mark.integration


_run = run_cli


def _finish(results: list[AsyncResult]) -> None:
    """Wait until every task has a final result (failures included)."""
    for r in results:
        r.get(timeout=60, propagate=False)


def test_a_synced_store_holds_every_result_and_equals_a_rebuild(
    app: App, start_workers: StartWorkers, tmp_path: Path
) -> None:
    # Given tasks that succeeded and tasks that failed
    start_workers(1)
    add, fail = app.tasks["add"], app.tasks["fail"]
    ok = [add.send(i, 1) for i in range(20)]
    bad = [fail.send(f"no {i}") for i in range(5)]
    _finish(ok + bad)
    with ResultStore(app, tmp_path / "store.sqlite3") as store:
        # When a store syncs
        stats = store.sync(timeout=30)
        # Then it has each task's final record, value and error included
        assert stats.records >= 25
        for i, r in enumerate(ok):
            rec = store.get(r.id)
            assert rec is not None and rec.status is TaskStatus.SUCCESS, rec
            assert rec.task == "add" and rec.attempts == 1 and rec.worker_id
            assert rec.value is not None and add.decode_result(rec.value) == i + 1
        for i, r in enumerate(bad):
            rec = store.get(r.id)
            assert rec is not None and rec.status is TaskStatus.FAILURE, rec
            assert rec.error is not None
            assert (rec.error.type, rec.error.message) == ("ValueError", f"no {i}")
        assert store.count_by_status() == {TaskStatus.SUCCESS: 20, TaskStatus.FAILURE: 5}
        assert {r.task_id for r in store.query(status="FAILURE")} == {r.id for r in bad}
        # When more tasks finish and the same store syncs again (incrementally)
        more = [add.send(100, i) for i in range(10)]
        _finish(more)
        again = store.sync(timeout=30)
        assert 10 <= again.records < stats.records + 10  # it did not start over
        assert all(store.get(r.id) is not None for r in more)
        # Then a store rebuilt from scratch holds exactly the same rows and positions
        with ResultStore(app, ":memory:") as fresh:
            fresh.sync(timeout=30)
            assert list(fresh) == list(store)
            assert fresh.positions() == store.positions()
            assert len(list(fresh)) == 35


def test_result_command_shows_the_stored_result_after_all_workers_restarted(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str, tmp_path: Path
) -> None:
    # Given a task that succeeded and one that failed, on a worker that is then killed -9
    (first,) = start_workers(1)
    ok, bad = app.tasks["add"].send(40, 2), app.tasks["fail"].send("kaputt")
    _finish([ok, bad])
    first.kill()
    # and a new worker started in its place
    start_workers(1)
    env = {"STREAMTASKS_NAMESPACE": ns}
    db = tmp_path / "cli.sqlite3"

    def show(task_id: str) -> subprocess.CompletedProcess[str]:
        args = ("result", task_id, "--app", APP_SPEC, "--json", "--db", str(db))
        return _run("-b", kafka_bootstrap, *args, env=env)

    # When `streamtasks result ID --json` runs (its store built from the topic)
    shown = show(ok.id)
    # Then it shows the stored result in the usual format
    assert shown.returncode == 0, shown.stderr
    out = json.loads(shown.stdout)
    assert out["task_id"] == ok.id and out["task"] == "add"
    assert out["status"] == "SUCCESS" and out["value"] == 42 and out["attempts"] == 1
    assert out["worker_id"] and out["created_at"] <= out["finished_at"]
    # and the failed task with its error (now from the store synced incrementally)
    failed = show(bad.id)
    assert failed.returncode == 0, failed.stderr
    out = json.loads(failed.stdout)
    assert out["status"] == "FAILURE"
    assert out["error"] == {"type": "ValueError", "message": "kaputt"}
    # and an unknown id is reported as such
    unknown = show("no-such-task")
    assert unknown.returncode == 1 and "no result (PENDING or unknown)" in unknown.stdout
    # and the file the command kept holds both results without syncing again
    with ResultStore(app, db) as store:
        assert {r.task_id for r in store} == {ok.id, bad.id}


def test_expire_writes_tombstones_and_a_fresh_store_no_longer_has_the_results(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str, tmp_path: Path
) -> None:
    # Given old results (a success and a failure) and, 6 s later, young ones
    start_workers(1)
    add, fail = app.tasks["add"], app.tasks["fail"]
    old = [add.send(i, i) for i in range(5)] + [fail.send("old")]
    _finish(old)
    time.sleep(6)  # the results must age; nothing else to wait for
    young_sent = time.monotonic()
    young = [add.send(i, 0) for i in range(3)]
    _finish(young)

    def young_ttl(slack: float = 1.0) -> float:
        """A TTL the young results have not reached (in ``slack`` seconds) and the old ones,
        >= 6 s older, have: on a loaded machine a fixed 2 s was passed by the young ones too."""
        return time.monotonic() - young_sent + slack

    ttl = timedelta(seconds=young_ttl())
    with ResultStore(app, tmp_path / "store.sqlite3") as store:
        # When a dry run counts them, nothing is removed
        assert store.expire(ttl, dry_run=True) == 6
        assert all(store.get(r.id) is not None for r in old)
        # When they expire for real
        assert store.expire(ttl) == 6
        # Then the store no longer has the old ones but keeps the young ones
        assert all(store.get(r.id) is None for r in old)
        assert all(store.get(r.id) is not None for r in young)
        # and a sync reading the tombstones back changes nothing
        store.sync(timeout=30)
        remaining = list(store)
    assert {r.task_id for r in remaining} == {r.id for r in young}
    # Then the results topic holds one tombstone per expired id
    old_ids = {r.id.encode() for r in old}

    def tombstones(msgs: list[Message]) -> set[bytes]:
        return {k for m in msgs if m.value() is None and (k := m.key()) is not None}

    msgs = consume_all(
        kafka_bootstrap,
        f"{ns}.results",
        expect=lambda got: tombstones(got) >= old_ids,
        timeout=20,
    )
    assert tombstones(msgs) == old_ids
    # and a store rebuilt from the topic does not have them either
    with ResultStore(app, ":memory:") as fresh:
        fresh.sync(timeout=30)
        assert list(fresh) == remaining
    # and the command line finds nothing more to expire
    dry = _run(
        "-b",
        kafka_bootstrap,
        "results",
        "expire",
        "--app",
        APP_SPEC,
        "--older-than",
        f"{young_ttl(slack=4.0):.1f}",  # the slack covers the command's own start-up
        "--dry-run",
        "--db",
        str(tmp_path / "cli.sqlite3"),
        env={"STREAMTASKS_NAMESPACE": ns},
    )
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.strip() == "would expire 0 results"


def test_sync_of_a_missing_results_topic_says_how_to_create_it(kafka_bootstrap: str) -> None:
    app = App("absent", namespace=unique_name("none"), bootstrap_servers=kafka_bootstrap)
    with (
        ResultStore(app, ":memory:") as store,
        pytest.raises(BrokerError, match="streamtasks topics apply"),
    ):
        store.sync(timeout=5)
    app.close()


def test_results_expire_has_help_with_an_example() -> None:
    proc = _run("results", "expire", "--help")
    assert proc.returncode == 0 and "Example:" in proc.stdout and "--older-than" in proc.stdout
