"""The result store's SQLite file: its tables, and the pure fold of records into changes.

:func:`fold` is the pure part ("latest record per task id wins; a tombstone deletes; a record
below its partition's position was applied before"); :class:`StoreTables` keeps the rows and
the per-partition positions in one SQLite file and changes both in one transaction. Reading
the topic is :class:`streamtasks.ops.store.ResultStore`'s part.

Invariants: rows and positions change together (``BEGIN IMMEDIATE`` ... ``COMMIT``), so a
crash or a concurrent sync of the same file never leaves them inconsistent; a file belongs to
one results topic (opening it for another raises :class:`ConfigError`); a file of an older
table layout is emptied and rebuilt by the next sync.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streamtasks.errors import ConfigError
from streamtasks.wire.envelope import ErrorInfo, ResultRecord, TaskStatus

__all__ = ["Batch", "Change", "StoreTables", "fold"]

_LAYOUT_VERSION = "1"
_FINAL = tuple(s.value for s in TaskStatus if s.is_final)
_RECORD_COLUMNS = (
    "task_id",
    "task",
    "status",
    "attempts",
    "worker_id",
    "created_at",
    "started_at",
    "finished_at",
    "value",
    "error_type",
    "error_message",
    "traceback",
)
_COLUMNS = (*_RECORD_COLUMNS, "kafka_partition", "kafka_offset")
_SELECT = f"SELECT {', '.join(_RECORD_COLUMNS)} FROM results"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    task_id         TEXT PRIMARY KEY,
    task            TEXT NOT NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    worker_id       TEXT,
    created_at      INTEGER NOT NULL,
    started_at      INTEGER,
    finished_at     INTEGER,
    value           BLOB,
    error_type      TEXT,
    error_message   TEXT,
    traceback       TEXT,
    kafka_partition INTEGER NOT NULL,
    kafka_offset    INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS results_by_status ON results (status, finished_at);
CREATE INDEX IF NOT EXISTS results_by_task ON results (task, finished_at);
CREATE TABLE IF NOT EXISTS positions (
    kafka_partition INTEGER PRIMARY KEY,
    next_offset     INTEGER NOT NULL
);
"""


# -- the pure part: folding records into a batch of changes ------------------------------------
@dataclass(frozen=True, slots=True)
class Change:
    """One record of the results topic as the store sees it.

    ``record=None`` is a tombstone (delete ``task_id``); ``task_id=None`` marks a record that
    only advances its partition's position (no key, or a value that cannot be decoded).
    """

    partition: int
    offset: int
    task_id: str | None
    record: ResultRecord | None


@dataclass(frozen=True, slots=True)
class Batch:
    """The net effect of some records: the last change per task id, and where to read next."""

    latest: dict[str, Change]
    positions: dict[int, int]


def fold(changes: Iterable[Change], applied: Mapping[int, int]) -> Batch:
    """Fold ``changes`` (in the order read) on top of the positions already ``applied``.

    A change below its partition's position was applied before (a re-read after a crash, or a
    concurrent sync) and is dropped; of the rest, the last change per task id wins.
    """
    latest: dict[str, Change] = {}
    positions: dict[int, int] = {}
    for change in changes:
        if change.offset < positions.get(change.partition, applied.get(change.partition, 0)):
            continue
        positions[change.partition] = change.offset + 1
        if change.task_id is not None:
            latest[change.task_id] = change
    return Batch(latest, positions)


def _row(change: Change) -> tuple[Any, ...]:
    rec = change.record
    assert rec is not None
    err = rec.error
    return (
        change.task_id,
        rec.task,
        rec.status.value,
        rec.attempts,
        rec.worker_id,
        rec.created_at,
        rec.started_at,
        rec.finished_at,
        rec.value,
        None if err is None else err.type,
        None if err is None else err.message,
        None if err is None else err.traceback,
        change.partition,
        change.offset,
    )


def _record(row: tuple[Any, ...]) -> ResultRecord:
    (task_id, task, status, attempts, worker_id, created, started, finished, value) = row[:9]
    err_type, err_message, traceback = row[9:12]
    return ResultRecord(
        task_id=task_id,
        task=task,
        status=TaskStatus(status),
        attempts=attempts,
        created_at=created,
        worker_id=worker_id,
        started_at=started,
        finished_at=finished,
        value=value,
        error=None if err_type is None else ErrorInfo(err_type, err_message or "", traceback),
    )


# -- the SQLite tables -------------------------------------------------------------------------
class StoreTables:
    """The SQLite file: rows and positions, changed together in one transaction."""

    def __init__(self, path: str, topic: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            # autocommit: transactions are explicit (BEGIN IMMEDIATE) so readers never block
            self._conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise ConfigError(f"cannot open the result store {path!r}: {exc}") from exc
        try:
            if path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._open(path, topic)
        except BaseException as exc:
            self._conn.close()
            if isinstance(exc, sqlite3.Error):
                raise ConfigError(f"cannot open the result store {path!r}: {exc}") from exc
            raise

    def _open(self, path: str, topic: str) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            meta = dict(c.execute("SELECT key, value FROM meta").fetchall())
            if meta.get("topic", topic) != topic:
                raise ConfigError(
                    f"the result store {path!r} holds the results of topic {meta['topic']!r}, "
                    f"not {topic!r}: use another file (--db PATH) for this app"
                )
            if meta.get("layout", _LAYOUT_VERSION) != _LAYOUT_VERSION:
                # a cache of an older layout: empty it, the next sync rebuilds it from the topic
                c.execute("DROP TABLE IF EXISTS results")
                c.execute("DROP TABLE IF EXISTS positions")
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    c.execute(statement)
            c.execute("INSERT OR REPLACE INTO meta VALUES ('topic', ?)", (topic,))
            c.execute("INSERT OR REPLACE INTO meta VALUES ('layout', ?)", (_LAYOUT_VERSION,))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def close(self) -> None:
        self._conn.close()

    def positions(self) -> dict[int, int]:
        rows = self._conn.execute("SELECT kafka_partition, next_offset FROM positions")
        return {int(p): int(o) for p, o in rows.fetchall()}

    def apply(self, changes: list[Change]) -> Batch:
        """Apply ``changes`` and their positions in one transaction; returns the folded batch."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            # positions are read inside the write lock, so a concurrent sync's work is seen
            batch = fold(changes, self.positions())
            gone = [(tid,) for tid, ch in batch.latest.items() if ch.record is None]
            rows = [_row(ch) for ch in batch.latest.values() if ch.record is not None]
            c.executemany("DELETE FROM results WHERE task_id = ?", gone)
            c.executemany(
                f"INSERT OR REPLACE INTO results ({', '.join(_COLUMNS)}) "
                f"VALUES ({', '.join('?' * len(_COLUMNS))})",
                rows,
            )
            c.executemany(
                "INSERT OR REPLACE INTO positions (kafka_partition, next_offset) VALUES (?, ?)",
                sorted(batch.positions.items()),
            )
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
        return batch

    def clear(self) -> None:
        """Forget every row and position (the next sync reads the topic from the start)."""
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("DELETE FROM results")
            c.execute("DELETE FROM positions")
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise

    def get(self, task_id: str) -> ResultRecord | None:
        row = self._conn.execute(f"{_SELECT} WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else _record(row)

    def query(self, status: str | None, task: str | None, limit: int | None) -> list[ResultRecord]:
        where, params = [], []
        if status is not None:
            where.append("status = ?")
            params.append(status)
        if task is not None:
            where.append("task = ?")
            params.append(task)
        sql = _SELECT + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY COALESCE(finished_at, started_at, created_at) DESC, task_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return [_record(row) for row in self._conn.execute(sql, params).fetchall()]

    def count_by_status(self) -> dict[TaskStatus, int]:
        rows = self._conn.execute("SELECT status, COUNT(*) FROM results GROUP BY status")
        return {TaskStatus(s): int(n) for s, n in rows.fetchall()}

    def final_before(self, cutoff_ms: int) -> list[str]:
        """Task ids with a final status that finished before ``cutoff_ms``."""
        rows = self._conn.execute(
            f"SELECT task_id FROM results WHERE status IN ({', '.join('?' * len(_FINAL))}) "
            "AND COALESCE(finished_at, created_at) < ? ORDER BY task_id",
            (*_FINAL, cutoff_ms),
        )
        return [str(tid) for (tid,) in rows.fetchall()]

    def delete(self, task_ids: Iterable[str]) -> None:
        c = self._conn
        c.execute("BEGIN IMMEDIATE")
        try:
            c.executemany("DELETE FROM results WHERE task_id = ?", ((t,) for t in task_ids))
            c.execute("COMMIT")
        except BaseException:
            c.execute("ROLLBACK")
            raise
