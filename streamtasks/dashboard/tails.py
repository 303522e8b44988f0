"""The dashboard's background readers: they tail Kafka into :class:`Aggregates`.

* results: a :class:`ResultStore` (its SQLite file is the dashboard's only local cache) synced
  every second; each synced batch also feeds the aggregates, and on start the cached rows seed
  them, so a restarted dashboard shows the same history as before;
* task topics: the argument frames of recent tasks (for the task page), decoded lazily;
* events (when the events module is present): task timelines and worker heartbeats;
* status: lag, tier and DLQ depths and the group (``ops.status``) every few seconds, which also
  gives the lag samples behind the red banner; the scheduler's state topic alike.

Invariants: a tail never stops on a broker error (it logs it, shows it on the pages through
:attr:`Tails.problems`, and tries again); the threads are daemons stopped by :meth:`Tails.stop`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from streamtasks.dashboard.aggregates import Aggregates
from streamtasks.errors import DecodeError, StreamtasksError
from streamtasks.kafka import OFFSET_BEGINNING, Message, TopicPartition, reader
from streamtasks.ops import status as status_mod
from streamtasks.ops.store import Batch, Change, ResultStore, default_store_path
from streamtasks.scheduler import LastFire, read_fires
from streamtasks.schedules import next_fire
from streamtasks.wire.envelope import Envelope, ResultRecord, now_ms
from streamtasks.wire.topics import task_topic

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["ScheduleRow", "Tails", "cache_path", "queue_of"]

log = structlog.get_logger("streamtasks.dashboard")


def cache_path(app: App, cache_dir: Path | None) -> Path:
    """The dashboard's result cache: next to the CLI's result store unless ``cache_dir``."""
    default = default_store_path(app)
    folder = cache_dir if cache_dir is not None else default.parent
    return folder / f"dashboard-{default.name}"


def queue_of(app: App, task: str) -> str:
    known = app.tasks.get(task)
    return known.queue if known is not None else "?"


@dataclass(frozen=True, slots=True)
class ScheduleRow:
    name: str
    task: str
    every: str
    last_fire: datetime | None
    last_task_id: str | None
    leader: str | None
    next_fire: datetime


class _FeedingStore(ResultStore):
    """A result store whose every applied batch also goes into the aggregates, together with
    the record each change supersedes (read from the store just before it is replaced)."""

    def __init__(
        self,
        app: App,
        path: Path,
        feed: Callable[[list[tuple[Change, ResultRecord | None]]], None],
    ) -> None:
        super().__init__(app, path)
        self._feed = feed

    def apply(self, changes: Iterable[Change]) -> Batch:
        changes = list(changes)
        before = {ch.task_id: self.get(ch.task_id) for ch in changes if ch.task_id is not None}
        batch = super().apply(changes)
        self._feed([(ch, before.get(tid)) for tid, ch in batch.latest.items()])
        return batch


class Tails:
    """Start with :meth:`start`; the web handlers read :attr:`agg`, :attr:`status`, ..."""

    def __init__(
        self,
        app: App,
        agg: Aggregates,
        *,
        cache_dir: Path | None = None,
        status_every: float = 3.0,
        extra: Iterable[Callable[[Tails], None]] = (),
    ) -> None:
        self.app = app
        self.agg = agg
        self.path = cache_path(app, cache_dir)
        self.status_every = status_every
        self.status: status_mod.StatusReport | None = None
        self.schedules: list[ScheduleRow] = []
        self.problems: dict[str, str] = {}
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._extra = list(extra)

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loops: list[Callable[[], None]] = [self._results_loop, self._args_loop, self._status_loop]
        loops += [lambda fn=fn: fn(self) for fn in self._extra]  # type: ignore[misc]
        for loop in loops:
            t = threading.Thread(target=loop, name="dashboard-tail", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

    @property
    def stopping(self) -> threading.Event:
        return self._stop

    def result_store(self) -> ResultStore:
        """A store on the cache file for the calling thread (SQLite connections are per thread)."""
        return ResultStore(self.app, self.path)

    def _problem(self, what: str, exc: Exception | None) -> None:
        if exc is None:
            self.problems.pop(what, None)
            return
        self.problems[what] = str(exc)
        log.warning("dashboard tail failed; retrying", tail=what, error=str(exc))

    # -- results -----------------------------------------------------------------------------
    def _feed(self, changes: list[tuple[Change, ResultRecord | None]]) -> None:
        now = now_ms()
        for ch, previous in changes:
            if ch.record is not None:
                queue = queue_of(self.app, ch.record.task)
                self.agg.record_result(ch.record, queue, now, previous)
            elif previous is not None:
                self.agg.retract(previous, queue_of(self.app, previous.task), now)

    def _results_loop(self) -> None:
        store = _FeedingStore(self.app, self.path, self._feed)
        try:
            now = now_ms()
            for rec in store.query(limit=None):
                self.agg.record_result(rec, queue_of(self.app, rec.task), now)
            while not self._stop.is_set():
                try:
                    store.sync(timeout=10.0)
                    self._problem("results", None)
                    self.ready.set()
                except StreamtasksError as exc:
                    self._problem("results", exc)
                self._stop.wait(1.0)
        finally:
            store.close()

    # -- task arguments ----------------------------------------------------------------------
    def _args_loop(self) -> None:
        ns = self.app.settings.namespace
        topics = [task_topic(ns, q) for q in self.app.queues()]
        self.follow(topics, self._on_task_record, name="task topics")

    def _on_task_record(self, msg: Message) -> None:
        value = msg.value()
        if value is None:
            return
        try:
            _, raw = self.app.codec.decode(value, expect=self.app.envelope_schema)
        except DecodeError:
            return  # the worker sends it to the DLQ; the DLQ page shows it
        env = Envelope.from_avro(raw)
        self.agg.record_args(env.id, env.task, env.args)

    def follow(
        self,
        topics: list[str],
        handle: Callable[[Message], None],
        *,
        name: str,
        start: Callable[[str, int], int] | None = None,
    ) -> None:
        """Read ``topics`` from ``start(topic, partition)`` (default: the beginning) and keep
        following them, calling ``handle`` per record, until :meth:`stop`."""
        consumer = reader.open_reader(self.app)
        assigned: set[tuple[str, int]] = set()
        try:
            while not self._stop.is_set():
                try:
                    self._assign_new(consumer, topics, assigned, start)
                    self._problem(name, None)
                except StreamtasksError as exc:
                    self._problem(name, exc)
                until = now_ms() + 5_000
                while now_ms() < until and not self._stop.is_set():
                    for msg in consumer.consume(500, 0.2) if assigned else []:
                        if msg.error() is None:
                            handle(msg)
                    if not assigned:
                        self._stop.wait(0.5)
        finally:
            consumer.close()

    @staticmethod
    def _assign_new(
        consumer: Any,
        topics: list[str],
        assigned: set[tuple[str, int]],
        start: Callable[[str, int], int] | None,
    ) -> None:
        fresh = [
            (t, p)
            for t in topics
            for p in reader.partitions_of(consumer, t, timeout=5.0)
            if (t, p) not in assigned
        ]
        if fresh:
            consumer.incremental_assign(
                [TopicPartition(t, p, start(t, p) if start else OFFSET_BEGINNING) for t, p in fresh]
            )
            assigned.update(fresh)

    # -- status and schedules ----------------------------------------------------------------
    def _status_loop(self) -> None:
        while not self._stop.is_set():
            try:
                report = status_mod.collect(self.app)
                self.status = report
                for q in report.queues:
                    self.agg.record_lag(q.name, report.at_ms, q.lag_seconds)
                self._problem("status", None)
            except StreamtasksError as exc:
                self._problem("status", exc)
            if self.app.schedules:
                try:
                    self.schedules = schedule_rows(self.app, read_fires(self.app, timeout=5.0))
                    self._problem("scheduler", None)
                except StreamtasksError as exc:
                    self._problem("scheduler", exc)
            self._stop.wait(self.status_every)


def schedule_rows(app: App, state: dict[str, LastFire]) -> list[ScheduleRow]:
    """Each periodic task with its last fire (from the state topic) and its next one."""
    now = datetime.now(UTC)
    rows = []
    for name, sched in sorted(app.schedules.items()):
        last = state.get(name)
        every = sched.cron or (str(sched.every) if sched.every else "")
        rows.append(
            ScheduleRow(
                name,
                sched.task_name,
                every,
                last.fired if last else None,
                last.task_id if last else None,
                last.leader if last else None,
                next_fire(sched, max(now, last.fired) if last else now),
            )
        )
    return rows
