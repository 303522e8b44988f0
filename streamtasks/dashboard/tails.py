"""The dashboard's background readers: they tail Kafka into :class:`Aggregates`.

* results: a :class:`ResultStore` (its SQLite file is the dashboard's only local cache) synced
  every second; each synced batch also feeds the aggregates, and on start the cached rows seed
  them, so a restarted dashboard shows the same history as before;
* task topics (from an hour ago): the argument frames of recent tasks, decoded on the task page;
* events (from an hour ago, :func:`streamtasks.ops.events.read_events`): task timelines and
  the latest heartbeat of each worker;
* status: lag, tier and DLQ depths and the group (``ops.status``) every few seconds, which also
  gives the lag samples behind the red banner (its worker rates from the heartbeats the events
  tail keeps, so ``{ns}.events`` is read once); the scheduler's state topic alike.

Invariants: a tail never stops on a broker error (it logs it, shows it on the pages through
:attr:`Tails.problems`, and tries again); the threads are daemons stopped by :meth:`Tails.stop`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from streamtasks.dashboard.aggregates import HOUR_MS, Aggregates, TimelineEntry
from streamtasks.errors import DecodeError, StreamtasksError
from streamtasks.kafka import Message, reader
from streamtasks.ops import status as status_mod
from streamtasks.ops.events import read_events
from streamtasks.ops.store import Batch, Change, ResultStore, default_store_path
from streamtasks.scheduler import LastFire, read_fires
from streamtasks.schedules import next_fire
from streamtasks.wire.envelope import Envelope, ResultRecord, now_ms
from streamtasks.wire.events import TaskEvent, WorkerHeartbeat
from streamtasks.wire.topics import task_topic

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["ScheduleRow", "Tails", "cache_path", "queue_of_task"]

log = structlog.get_logger("streamtasks.dashboard")

#: how far back the task and events topics are read on start (the results topic: all of it)
HISTORY_MS = HOUR_MS
#: seconds before a tail that failed (or found no topic) tries again
RETRY_S = 5.0


def cache_path(app: App, cache_dir: Path | None) -> Path:
    """The dashboard's result cache: next to the CLI's result store unless ``cache_dir``."""
    default = default_store_path(app)
    folder = cache_dir if cache_dir is not None else default.parent
    return folder / f"dashboard-{default.name}"


def queue_of_task(app: App, task: str) -> str:
    """The queue task name ``task`` is registered on (``"?"``: not a task of this app); the
    queue of a topic is :func:`streamtasks.wire.topics.queue_of`."""
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
        status_every: float = 10.0,
    ) -> None:
        self.app = app
        self.agg = agg
        self.path = cache_path(app, cache_dir)
        self.status_every = status_every
        self.status: status_mod.StatusReport | None = None
        self.schedules: list[ScheduleRow] = []
        self.problems: dict[str, str] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        loops: list[Callable[[], None]] = [
            self._results_loop,
            self._args_loop,
            self._events_loop,
            self._status_loop,
        ]
        for loop in loops:
            t = threading.Thread(target=loop, name=f"dashboard{loop.__name__}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout)

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
                queue = queue_of_task(self.app, ch.record.task)
                self.agg.record_result(ch.record, queue, now, previous)
            elif previous is not None:
                self.agg.retract(previous, queue_of_task(self.app, previous.task), now)

    def _results_loop(self) -> None:
        store = _FeedingStore(self.app, self.path, self._feed)
        try:
            now = now_ms()
            for rec in store.query(limit=None):
                self.agg.record_result(rec, queue_of_task(self.app, rec.task), now)
            while not self._stop.is_set():
                try:
                    store.sync(timeout=10.0)
                    self._problem("results", None)
                except StreamtasksError as exc:
                    self._problem("results", exc)
                self._stop.wait(1.0)
        finally:
            store.close()

    # -- task arguments and events ----------------------------------------------------------
    def _retrying(self, name: str, body: Callable[[], None]) -> None:
        """Run ``body`` (a tail that returns when its topics are missing, or raises on a broker
        error) again and again until :meth:`stop`."""
        while not self._stop.is_set():
            try:
                body()
                self._problem(name, None)
            except StreamtasksError as exc:
                self._problem(name, exc)
            self._stop.wait(RETRY_S)

    def _args_loop(self) -> None:
        self._retrying("task topics", self._follow_task_topics)

    def _follow_task_topics(self) -> None:
        """The task topics from :data:`HISTORY_MS` ago on: the arguments of recent tasks."""
        ns = self.app.settings.namespace
        topics = [task_topic(ns, q) for q in self.app.queues()]
        consumer = reader.open_reader(self.app)
        try:
            starts = reader.starts_since(consumer, topics, now_ms() - HISTORY_MS)
            for msg in reader.tail(consumer, starts, stop=self._stop.is_set):
                self._on_task_record(msg)
        finally:
            consumer.close()

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

    def _events_loop(self) -> None:
        self._retrying("events", self._follow_events)

    def _follow_events(self) -> None:
        """``{ns}.events`` from :data:`HISTORY_MS` ago on: timelines and heartbeats."""
        events = read_events(
            self.app,
            since_ms=now_ms() - HISTORY_MS,
            follow=True,
            stop=self._stop.is_set,
            missing_ok=True,
        )
        for event in events:
            if isinstance(event, WorkerHeartbeat):
                self.agg.record_heartbeat(event.worker_id, event)
            else:
                self.agg.record_event(event.task_id, timeline_entry(event))

    # -- status and schedules ----------------------------------------------------------------
    def _status_loop(self) -> None:
        while not self._stop.is_set():
            try:
                # the heartbeats the events tail follows: no second read of {ns}.events
                report = status_mod.collect(self.app, heartbeats=self.agg.window_heartbeats())
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


def timeline_entry(event: TaskEvent) -> TimelineEntry:
    """One line of a task's timeline: its error, else its run time, as the detail."""
    if event.error is not None:
        detail = f"{event.error.type}: {event.error.message}"
    elif event.runtime_ms is not None:
        detail = f"ran {event.runtime_ms:.1f} ms"
    else:
        known = event.offset is not None
        detail = f"partition {event.partition}, offset {event.offset}" if known else ""
    return TimelineEntry(event.type.value, event.timestamp, event.attempt, event.worker_id, detail)


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
