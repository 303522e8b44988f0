"""The result store: a local, queryable SQLite view of the compacted ``{ns}.results`` topic.

The topic is the source of truth; the store is a cache of its folded state ("latest record per
task id wins; a tombstone deletes") that :meth:`ResultStore.sync` brings up to date by reading
each partition from where the last sync stopped to its end. Result TTL works through the topic
too: :meth:`ResultStore.expire` writes tombstones for old final results.
The SQLite file and the pure fold live in :mod:`streamtasks.ops.storedb`; this module reads
the topic into them.

Invariants:

* Records of one partition are applied in offset order, and every record of a task id lives in
  one partition (the producer's key partitioner puts them there), so the latest-wins fold is
  exactly what log compaction keeps. Compaction itself is not relied on: superseded records may
  still be on the topic and are simply overwritten here.
* The rows and the per-partition positions (next offset to read) change in one SQLite
  transaction, and records below a partition's stored position are never applied again. A crash
  or a concurrent sync of the same file therefore never leaves them inconsistent, and a store
  rebuilt from scratch equals one synced incrementally.
* A record that cannot be decoded, or has no key, only advances its partition's position.
* The file belongs to one results topic; opening it for another raises :class:`ConfigError`.
  A file of an older table layout is a stale cache: it is emptied and rebuilt on the next sync.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import structlog

from streamtasks.errors import BrokerError, ConfigError, DecodeError
from streamtasks.kafka import (
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
    clients,
    reader,
)
from streamtasks.ops.storedb import Batch, Change, StoreTables, fold
from streamtasks.wire.envelope import ResultRecord, TaskStatus, now_ms
from streamtasks.wire.topics import results_topic

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.kafka import Consumer

__all__ = ["Batch", "Change", "ResultStore", "SyncStats", "default_store_path", "fold"]

log = structlog.get_logger("streamtasks.store")


def _seconds(ttl: timedelta | float) -> float:
    seconds = ttl.total_seconds() if isinstance(ttl, timedelta) else float(ttl)
    if not seconds >= 0:
        raise ConfigError(f"the result TTL must be >= 0 seconds, got {ttl!r}")
    return seconds


def _read_error(err: KafkaError) -> None:
    """A read error while syncing: fatal ones (and a deleted topic) end the sync."""
    if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise BrokerError(f"reading the results topic failed: {err.str()}")
    log.warning("results topic read error", error=err.str())


def default_store_path(app: App) -> Path:
    """``$XDG_CACHE_HOME`` (or ``~/.cache``) ``/streamtasks/{ns}-{app}.sqlite3``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "streamtasks" / f"{app.settings.namespace}-{app.name}.sqlite3"


@dataclass(frozen=True, slots=True)
class SyncStats:
    """What one :meth:`ResultStore.sync` did."""

    records: int  # records read from the topic (including ones already applied)
    upserted: int  # task ids whose row was written
    deleted: int  # task ids deleted by tombstones


# -- the store ---------------------------------------------------------------------------------
class ResultStore:
    """A local SQLite view of an app's results topic: ``ResultStore(app).sync()``, then
    ``get(task_id)``, ``query(status=..., task=...)``, ``count_by_status()``.

    ``path``: the SQLite file (default :func:`default_store_path`), or ``":memory:"``.
    Not thread-safe: use one store per thread (several processes may share a file).
    """

    def __init__(self, app: App, path: str | os.PathLike[str] | None = None) -> None:
        self.app = app
        self.topic = results_topic(app.settings.namespace)
        self.path = str(path) if path is not None else str(default_store_path(app))
        self._tables = StoreTables(self.path, self.topic)

    def __repr__(self) -> str:
        return f"<ResultStore {self.topic} at {self.path}>"

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(
        self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._tables.close()

    # -- reading the topic -------------------------------------------------------------------
    def sync(self, timeout: float = 30.0) -> SyncStats:
        """Read the results topic from the stored positions to the end of every partition.

        Progress is saved batch by batch, so an interrupted sync resumes where it stopped.
        Raises :class:`BrokerError` when the topic is missing or a partition's end is not
        reached within ``timeout`` seconds (what was read is kept).
        """
        deadline = time.monotonic() + timeout
        consumer = clients.make_consumer(
            self.app.settings.consumer(None, **{"enable.partition.eof": True})
        )
        stats = SyncStats(0, 0, 0)
        try:
            partitions = self._partitions(consumer, timeout)
            start = self._tables.positions()
            if start and self._went_backwards(consumer, start, partitions):
                log.warning(
                    "the results topic's history went backwards (a new broker or a recreated "
                    "topic): rebuilding the local result store",
                    topic=self.topic,
                    path=self.path,
                )
                self._tables.clear()
                start = {}
            tail = reader.TopicTail(consumer, self.topic, on_error=_read_error)
            tail.start({p: start.get(p, reader.BEGINNING) for p in partitions})
            while not tail.caught_up:
                if time.monotonic() > deadline:
                    raise BrokerError(
                        f"could not read the results topic {self.topic!r} to its end within "
                        f"{timeout:g}s (partitions {tail.behind} behind); what was read is "
                        "kept, run the sync again"
                    )
                changes = [self._change(msg) for msg in tail.take(0.1)]
                if changes:
                    batch = self.apply(changes)
                    deleted = sum(1 for ch in batch.latest.values() if ch.record is None)
                    stats = SyncStats(
                        stats.records + len(changes),
                        stats.upserted + len(batch.latest) - deleted,
                        stats.deleted + deleted,
                    )
        except KafkaException as exc:
            raise BrokerError(
                f"cannot read the results topic {self.topic!r}: {exc.args[0].str()}"
            ) from exc
        finally:
            consumer.close()
        return stats

    def _went_backwards(
        self, consumer: Consumer, start: dict[int, int], partitions: list[int]
    ) -> bool:
        """True if the topic no longer holds what the store read: a stored position beyond
        a partition's end whose last read record (at position - 1) is not there any more.
        Watermarks alone are not trusted (some brokers report a stale, too low end)."""
        suspects = []
        for p in partitions:
            pos = start.get(p, 0)
            if pos <= 0:
                continue
            _lo, hi = consumer.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10.0)
            if pos > hi:
                suspects.append(TopicPartition(self.topic, p, pos - 1))
        if len(start) > len(partitions) or any(p not in partitions for p in start):
            return True  # partitions the store read are gone
        if not suspects:
            return False
        consumer.assign(suspects)
        try:
            deadline = time.monotonic() + 3.0
            unconfirmed = {tp.partition: tp.offset for tp in suspects}
            while unconfirmed and time.monotonic() < deadline:
                msg = consumer.poll(0.2)
                if msg is None:
                    continue
                part = msg.partition()
                if part not in unconfirmed:
                    continue
                err = msg.error()
                if err is not None and not reader.is_partition_eof(err):
                    continue
                if err is None and msg.offset() == unconfirmed[part]:
                    del unconfirmed[part]  # the last record read is still there
                else:
                    return True  # reset to an earlier offset, or the end is before it
            return bool(unconfirmed)
        finally:
            consumer.unassign()

    def _partitions(self, consumer: Consumer, timeout: float) -> list[int]:
        return reader.require_partitions(
            consumer,
            self.topic,
            f"the results topic {self.topic!r} does not exist: run "
            "`streamtasks topics apply <module:app>` (or start a worker) first",
            timeout=max(timeout, 1.0),
        )

    def _change(self, msg: Message) -> Change:
        partition, offset, key, value = msg.partition(), msg.offset(), msg.key(), msg.value()
        assert partition is not None and offset is not None  # set on every non-error record
        if key is None:
            return Change(partition, offset, None, None)
        task_id = key.decode(errors="replace")
        if value is None:
            return Change(partition, offset, task_id, None)
        try:
            _, raw = self.app.codec.decode(value, expect=self.app.result_schema)
        except DecodeError as exc:
            log.warning(
                "undecodable record on the results topic skipped",
                error=str(exc),
                partition=partition,
                offset=offset,
            )
            return Change(partition, offset, None, None)
        return Change(partition, offset, task_id, ResultRecord.from_avro(raw))

    def apply(self, changes: Iterable[Change]) -> Batch:
        """Apply records read from the results topic (in offset order per partition) and
        their positions in one transaction; returns what they amounted to."""
        return self._tables.apply(list(changes))

    # -- queries -------------------------------------------------------------------------------
    def get(self, task_id: str) -> ResultRecord | None:
        """The latest stored record of ``task_id`` (as of the last sync), or ``None``."""
        return self._tables.get(task_id)

    def query(
        self,
        status: TaskStatus | str | None = None,
        task: str | None = None,
        limit: int | None = 100,
    ) -> list[ResultRecord]:
        """Stored records, most recently finished first; ``limit=None`` for all of them."""
        if status is not None:
            try:
                status = TaskStatus(status).value
            except ValueError:
                known = ", ".join(s.value for s in TaskStatus)
                raise ConfigError(f"unknown status {status!r}; use one of {known}") from None
        return self._tables.query(status, task, limit)

    def count_by_status(self) -> dict[TaskStatus, int]:
        """How many stored tasks are in each status (statuses with none are left out)."""
        return self._tables.count_by_status()

    def positions(self) -> dict[int, int]:
        """The next offset to read per partition of the results topic."""
        return self._tables.positions()

    def __iter__(self) -> Iterator[ResultRecord]:
        return iter(self.query(limit=None))

    # -- result TTL ----------------------------------------------------------------------------
    def expirable(self, older_than: timedelta | float, *, now: int | None = None) -> list[str]:
        """Ids of stored final results that finished more than ``older_than`` (a timedelta or
        seconds) before ``now`` (epoch ms, default the current time)."""
        cutoff = (now_ms() if now is None else now) - int(_seconds(older_than) * 1000)
        return self._tables.final_before(cutoff)

    def expire(
        self,
        older_than: timedelta | float | None = None,
        *,
        dry_run: bool = False,
        timeout: float = 30.0,
    ) -> int:
        """Delete final results that finished more than ``older_than`` ago (a timedelta or
        seconds; default the app's ``result_ttl``): syncs, writes a tombstone per task id to
        the results topic and, once the broker acknowledged it, removes the row here.

        Returns how many results were expired (with ``dry_run``: would be, nothing written).
        A task re-run after the sync keeps its newer record only if that record lands after
        the tombstone; run this on a schedule, not while the same ids are being redriven.
        """
        ttl = older_than if older_than is not None else self.app.settings.result_ttl
        if ttl is None:
            raise ConfigError(
                "no result TTL: pass --older-than SECONDS (or older_than=) or set "
                "STREAMTASKS_RESULT_TTL"
            )
        _seconds(ttl)  # a bad TTL fails before anything is read
        self.sync(timeout)
        expired = self.expirable(ttl)
        if dry_run or not expired:
            return len(expired)
        acked: list[str] = []
        failed: list[str] = []

        def on_delivery(err: KafkaError | None, msg: Message) -> None:
            key = msg.key()
            task_id = key.decode(errors="replace") if isinstance(key, bytes) else str(key)
            (failed if err is not None else acked).append(task_id)

        for task_id in expired:
            self.app.produce(self.topic, None, key=task_id.encode(), on_delivery=on_delivery)
        unsent = self.app.flush(timeout)
        self._tables.delete(acked)
        if failed or unsent:
            raise BrokerError(
                f"{len(failed) + unsent} of {len(expired)} tombstones were not acknowledged by "
                "the broker; those results are kept, run expire again"
            )
        log.info("results expired", count=len(acked), topic=self.topic)
        return len(acked)
