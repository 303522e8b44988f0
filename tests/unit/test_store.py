"""The result store without a broker: the latest-wins fold, tombstones, positions, SQLite."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from streamtasks import App
from streamtasks.config import Settings
from streamtasks.errors import ConfigError
from streamtasks.ops.store import Change, ResultStore, default_store_path, fold
from streamtasks.wire.envelope import ErrorInfo, ResultRecord, TaskStatus


def rec(
    task_id: str,
    status: TaskStatus = TaskStatus.SUCCESS,
    *,
    finished_at: int | None = 1_000,
    task: str = "add",
    value: bytes | None = None,
    error: ErrorInfo | None = None,
    attempts: int = 1,
) -> ResultRecord:
    return ResultRecord(
        task_id=task_id,
        task=task,
        status=status,
        attempts=attempts,
        created_at=10,
        worker_id="w-1",
        started_at=20,
        finished_at=finished_at,
        value=value,
        error=error,
    )


def put(partition: int, offset: int, record: ResultRecord) -> Change:
    return Change(partition, offset, record.task_id, record)


def tombstone(partition: int, offset: int, task_id: str) -> Change:
    return Change(partition, offset, task_id, None)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STREAMTASKS_BOOTSTRAP_SERVERS", "STREAMTASKS_RESULT_TTL", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def store() -> Iterator[ResultStore]:
    with ResultStore(App("unit", namespace="ns"), ":memory:") as s:
        yield s


def snapshot(s: ResultStore) -> tuple[list[ResultRecord], dict[int, int]]:
    return sorted(s, key=lambda r: r.task_id), s.positions()


# -- fold (pure) -------------------------------------------------------------------------------


def test_fold_keeps_the_latest_change_per_task_id_and_the_next_offsets() -> None:
    # Given a started and then a finished record of "a", and one record of "b"
    started, done = rec("a", TaskStatus.STARTED), rec("a", TaskStatus.SUCCESS)
    changes = [put(0, 5, started), put(1, 2, rec("b")), put(0, 6, done)]
    # When they are folded onto nothing applied yet
    batch = fold(changes, {})
    # Then "a" is its last record and each partition resumes after its last offset
    assert batch.latest["a"].record == done
    assert batch.latest["b"].record == rec("b")
    assert batch.positions == {0: 7, 1: 3}


def test_fold_a_tombstone_after_a_record_deletes_and_a_record_after_it_revives() -> None:
    batch = fold([put(0, 0, rec("a")), tombstone(0, 1, "a")], {})
    assert batch.latest["a"].record is None
    batch = fold([tombstone(0, 0, "a"), put(0, 1, rec("a", TaskStatus.FAILURE))], {})
    assert batch.latest["a"].record == rec("a", TaskStatus.FAILURE)


def test_fold_drops_changes_below_the_applied_positions() -> None:
    # Given partition 0 applied up to offset 10 (next 11)
    changes = [put(0, 9, rec("old")), put(0, 10, rec("also-old")), put(0, 11, rec("new"))]
    # When a re-read delivers offsets 9..11
    batch = fold(changes, {0: 11})
    # Then only offset 11 counts
    assert list(batch.latest) == ["new"]
    assert batch.positions == {0: 12}


def test_fold_a_record_without_a_usable_key_or_value_only_advances_the_position() -> None:
    batch = fold([put(3, 0, rec("a")), Change(3, 1, None, None)], {})
    assert batch.latest["a"].record == rec("a")
    assert batch.positions == {3: 2}


# -- the SQLite tables -------------------------------------------------------------------------


def test_a_stored_record_reads_back_equal_with_every_field(store: ResultStore) -> None:
    # Given a failed task with an error and traceback, and a succeeded one with a value
    failed = rec("f", TaskStatus.FAILURE, error=ErrorInfo("ValueError", "boom", "Traceback..."))
    ok = rec("s", value=b"\xc3\x01binary", attempts=3)
    # When both are applied
    store.apply([put(0, 0, failed), put(2, 0, ok)])
    # Then get() returns them unchanged, and unknown ids are None
    assert store.get("f") == failed
    assert store.get("s") == ok
    assert store.get("nope") is None
    assert store.positions() == {0: 1, 2: 1}


def test_latest_record_wins_across_batches_and_tombstones_delete(store: ResultStore) -> None:
    store.apply([put(0, 0, rec("a", TaskStatus.PENDING)), put(0, 1, rec("b"))])
    store.apply([put(0, 2, rec("a", TaskStatus.STARTED))])
    assert store.get("a") == rec("a", TaskStatus.STARTED)
    # When "b" gets a tombstone, and an id never seen gets one too
    batch = store.apply([tombstone(0, 3, "b"), tombstone(0, 4, "never-seen")])
    # Then "b" is gone, nothing else changed, and the position moved past both
    assert store.get("b") is None
    assert [r.task_id for r in store] == ["a"]
    assert store.positions() == {0: 5}
    assert sum(1 for c in batch.latest.values() if c.record is None) == 2


def test_re_applying_records_already_applied_changes_nothing(store: ResultStore) -> None:
    # Given "a" finished at offset 1 (after STARTED at offset 0)
    first = [put(0, 0, rec("a", TaskStatus.STARTED)), put(0, 1, rec("a"))]
    store.apply(first)
    before = snapshot(store)
    # When the same offsets are delivered again (a crash after the commit, or a second
    # process syncing the same file), even just the older one
    store.apply(first)
    store.apply(first[:1])
    # Then the newer state stays
    assert snapshot(store) == before
    assert store.get("a") == rec("a")


def test_a_failed_apply_leaves_rows_and_positions_as_they_were(
    store: ResultStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    import streamtasks.ops.storedb as store_module

    store.apply([put(0, 0, rec("a", TaskStatus.STARTED))])
    before = snapshot(store)

    def broken_row(change: Change) -> tuple[object, ...]:
        raise RuntimeError("disk on fire")

    # When writing the rows of the next batch fails half way
    monkeypatch.setattr(store_module, "_row", broken_row)
    with pytest.raises(RuntimeError):
        store.apply([tombstone(0, 1, "x"), put(0, 2, rec("a"))])
    # Then neither the rows nor the positions moved
    assert snapshot(store) == before


@pytest.mark.parametrize("seed", range(5))
def test_a_store_rebuilt_from_scratch_equals_one_synced_incrementally(seed: int) -> None:
    # Given a random results topic: 3 partitions, task ids pinned to one partition each,
    # records in every status and tombstones
    rnd = random.Random(seed)
    ids = [f"t{i}" for i in range(30)]
    offsets = [0, 0, 0]
    log: list[Change] = []
    for _ in range(400):
        tid = rnd.choice(ids)
        p = int(tid[1:]) % 3
        if rnd.random() < 0.15:
            log.append(tombstone(p, offsets[p], tid))
        else:
            status = rnd.choice(list(TaskStatus))
            log.append(put(p, offsets[p], rec(tid, status, attempts=rnd.randint(1, 5))))
        offsets[p] += 1
    # When one store applies it all at once, and another in random chunks with re-reads
    # (every chunk starts somewhere at or before where the previous one stopped)
    full, incremental = (ResultStore(App("unit", namespace="ns"), ":memory:") for _ in range(2))
    full.apply(log)
    i = 0
    while i < len(log):
        start = max(0, i - rnd.randint(0, 20))
        end = min(len(log), i + rnd.randint(1, 60))
        incremental.apply(log[start:end])
        i = end
    # Then both hold the same rows and positions, and those are the per-key latest
    assert snapshot(full) == snapshot(incremental)
    expected: dict[str, ResultRecord | None] = {}
    for change in log:
        assert change.task_id is not None
        expected[change.task_id] = change.record
    assert {r.task_id: r for r in full} == {k: v for k, v in expected.items() if v is not None}
    assert full.positions() == {0: offsets[0], 1: offsets[1], 2: offsets[2]}
    full.close()
    incremental.close()


def test_query_filters_orders_by_recency_and_limits(store: ResultStore) -> None:
    store.apply(
        [
            put(0, 0, rec("old", finished_at=100)),
            put(0, 1, rec("new", finished_at=300)),
            put(0, 2, rec("mid", TaskStatus.FAILURE, finished_at=200)),
            put(0, 3, rec("other", task="mul", finished_at=250)),
        ]
    )
    assert [r.task_id for r in store.query()] == ["new", "other", "mid", "old"]
    assert [r.task_id for r in store.query(status="SUCCESS", task="add")] == ["new", "old"]
    assert [r.task_id for r in store.query(status=TaskStatus.FAILURE)] == ["mid"]
    assert [r.task_id for r in store.query(limit=2)] == ["new", "other"]
    assert store.count_by_status() == {TaskStatus.SUCCESS: 3, TaskStatus.FAILURE: 1}
    with pytest.raises(ConfigError, match="unknown status 'DONE'"):
        store.query(status="DONE")


def test_only_final_results_older_than_the_ttl_are_expirable(store: ResultStore) -> None:
    now = 1_000_000
    store.apply(
        [
            put(0, 0, rec("old-ok", finished_at=now - 120_000)),
            put(0, 1, rec("old-dead", TaskStatus.DEAD, finished_at=now - 120_000)),
            put(0, 2, rec("old-retry", TaskStatus.RETRY, finished_at=now - 120_000)),
            put(0, 3, rec("young-ok", finished_at=now - 1_000)),
        ]
    )
    assert store.expirable(timedelta(minutes=1), now=now) == ["old-dead", "old-ok"]
    assert store.expirable(60.0, now=now) == ["old-dead", "old-ok"]
    with pytest.raises(ConfigError, match=">= 0 seconds"):
        store.expirable(-1, now=now)


def test_expire_without_any_ttl_is_a_config_error_before_touching_the_broker(
    store: ResultStore,
) -> None:
    with pytest.raises(ConfigError, match="STREAMTASKS_RESULT_TTL"):
        store.expire()


# -- the file ----------------------------------------------------------------------------------


def test_a_store_file_keeps_rows_and_positions_across_opens(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "store.sqlite3"
    app = App("unit", namespace="ns")
    with ResultStore(app, path) as first:
        first.apply([put(1, 7, rec("a"))])
    with ResultStore(app, path) as again:
        assert again.get("a") == rec("a")
        assert again.positions() == {1: 8}


def test_a_store_file_of_another_namespace_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    ResultStore(App("unit", namespace="one"), path).close()
    with pytest.raises(ConfigError, match=r"holds the results of topic 'one\.results'"):
        ResultStore(App("unit", namespace="two"), path)


def test_a_store_file_of_an_older_layout_is_emptied_for_a_rebuild(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    app = App("unit", namespace="ns")
    with ResultStore(app, path) as first:
        first.apply([put(0, 0, rec("a"))])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE meta SET value = '0' WHERE key = 'layout'")
    conn.close()
    with ResultStore(app, path) as reopened:
        assert reopened.get("a") is None
        assert reopened.positions() == {}


def test_the_default_path_is_per_namespace_and_app_in_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = default_store_path(App("billing", namespace="prod"))
    assert path == tmp_path / "streamtasks" / "prod-billing.sqlite3"


# -- the setting -------------------------------------------------------------------------------


def test_result_ttl_comes_from_the_argument_or_the_environment() -> None:
    assert Settings.resolve("a", environ={}).result_ttl is None
    assert Settings.resolve("a", environ={"STREAMTASKS_RESULT_TTL": "86400"}).result_ttl == 86400
    assert Settings.resolve("a", result_ttl=5, environ={}).result_ttl == 5.0
    for bad in ("0", "-3", "a week"):
        with pytest.raises(ConfigError, match="result_ttl must be a positive number"):
            Settings.resolve("a", environ={"STREAMTASKS_RESULT_TTL": bad})


def test_expire_defaults_to_the_app_setting(store: ResultStore) -> None:
    # Given an app whose settings carry a TTL but no broker address
    store.app.settings = replace(store.app.settings, result_ttl=60.0)
    # Then expire gets past the TTL check and fails on the missing broker instead
    with pytest.raises(ConfigError, match="no Kafka bootstrap servers"):
        store.expire()
