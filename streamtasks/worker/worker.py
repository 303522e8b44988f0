"""The worker: consume task events, run them on a pool, write outcomes, commit safely.

Threads and who owns what:

* the **poll thread** (the one calling :meth:`Worker.run`) owns the consumer, the offset
  trackers, the per-key queues and every counter; it is the only thread that polls the
  worker's producer, so delivery callbacks — where tasks are marked finished — run on it too;
* **task threads** decode, run the task and produce its outcome; they touch no shared state.

Invariants (at-least-once):

1. an offset is stored for commit only after the broker acknowledged the task's outcome
   (result record or dead letter), and only as part of the unbroken run of such offsets;
2. the poll loop never waits on task execution, so a slow task cannot exceed
   ``max.poll.interval.ms``; back-pressure pauses partitions instead of blocking;
3. tasks with the same key run one at a time, in offset order;
4. on revoke, in-flight work gets a bounded grace period, then what finished is committed
   and the rest is abandoned — it will be redelivered to the new owner;
5. nothing a record contains ends the process or strands its offset: an exception from the
   decisions taken on the poll thread, or from handling the record on a task thread, turns it
   into a dead letter (reason ``internal-error``, with the traceback); a partition whose oldest
   unfinished offset does not move for ``stall_warning`` seconds is logged (partition, offset,
   reason).

This module is the options, the run and the poll loop; what it drives lives beside it: running
an admitted record and completing it in :mod:`.running`; what happens when partitions come
and go, and the shutdown drain, in :mod:`.rebalance`; the stop
signals in :mod:`.stopsignals`; per-partition state in :mod:`.partitions`; producing outputs
and their acks in :mod:`.outputs`; running a record in :mod:`.executor` (outcomes in
:mod:`.outcomes`, workflow continuation in :mod:`.continuation`); the clients of one run in
:mod:`.session`; broker and stall warnings in :mod:`.health`.

Hooks (:mod:`streamtasks.worker.hooks`, ``Worker(hooks=[...])``) are called on the poll thread
at each step of a record's life; :class:`WorkerStats` is the first of them, the heartbeat
counters (:mod:`.heartbeats`, always on) the second. Per-task lifecycle events
(``events=True``, :mod:`.events`) are outputs of each outcome (written in batches of many
tasks' events), acknowledged before the commit.
"""

from __future__ import annotations

import functools
import os
import socket
import threading
import uuid
from collections import deque
from collections.abc import Callable, Sequence

import structlog
from confluent_kafka import KafkaError, Message

from streamtasks.app import App
from streamtasks.errors import ConfigError
from streamtasks.kafka import reader
from streamtasks.wire import headers as hdr
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.topics import chords_topic, results_topic, task_topic
from streamtasks.worker import groupwatch
from streamtasks.worker.burst import DrainWatch
from streamtasks.worker.events import TaskEvents
from streamtasks.worker.gctune import tuned_gc
from streamtasks.worker.health import BrokerWatch, StallWatch
from streamtasks.worker.heartbeats import HeartbeatCounters, HeartbeatSender
from streamtasks.worker.hooks import HookSet, WorkerHooks, WorkerStats
from streamtasks.worker.metrics import WorkerMetrics, serve_metrics
from streamtasks.worker.outcomes import Outcome, Record
from streamtasks.worker.outputs import Job
from streamtasks.worker.partitions import Partitions
from streamtasks.worker.rebalance import Rebalancing
from streamtasks.worker.running import TaskRunning
from streamtasks.worker.session import Session, SessionSpec
from streamtasks.worker.stopsignals import drain_then_force, on_stop_signals

__all__ = ["Worker", "WorkerStats"]

log = structlog.get_logger("streamtasks.worker")

TP = tuple[str, int]
_BATCH = 500  # records taken per consume call, at most


class Worker(TaskRunning, Rebalancing):
    """Runs an app's tasks from one or more queues as a member of the app's consumer group."""

    _s: Session  # set by run(): the clients and collaborators of the current run

    def __init__(
        self,
        app: App,
        *,
        queues: Sequence[str] | None = None,
        concurrency: int = 8,
        async_concurrency: int = 100,
        process_concurrency: int | None = None,
        app_spec: str | None = None,
        max_in_flight: int | None = None,
        max_in_flight_per_partition: int | None = None,
        group_id: str | None = None,
        worker_id: str | None = None,
        shutdown_grace: float = 30.0,
        revoke_grace: float = 10.0,
        create_topics: bool = True,
        cooperative: bool = False,
        stall_warning: float = 60.0,
        group_protocol: str = "classic",
        hooks: Sequence[WorkerHooks] = (),
        events: bool | None = None,
        heartbeat_interval: float = 5.0,
        metrics_port: int | None = None,
        metrics: bool = False,
        metrics_lag_interval: float = 5.0,
        gc_tuning: bool = True,
    ) -> None:
        """``metrics_port``: serve Prometheus metrics on ``/metrics`` there (see
        :mod:`streamtasks.worker.metrics`); ``metrics``: keep them without serving (in
        ``.metrics.registry``, or a supervisor's multiprocess directory); ``gc_tuning``:
        freeze the start-up heap and collect the young generation less often while running
        (:mod:`streamtasks.worker.gctune`; False leaves the collector alone)."""
        if concurrency < 1:
            raise ConfigError(f"concurrency must be >= 1, got {concurrency}")
        self.app = app
        self.queues = list(queues) if queues else app.queues()
        for q in self.queues:
            if q not in app.queues():
                raise ConfigError(
                    f"queue {q!r} has no tasks in app {app.name!r}; known queues: {app.queues()}"
                )
        self.concurrency = concurrency
        self.async_concurrency = async_concurrency
        self._process_tasks = [
            t.name for t in app.tasks.values() if t.pool == "process" and t.queue in self.queues
        ]
        if self._process_tasks and not app_spec:
            raise ConfigError(
                f"tasks {self._process_tasks} use pool='process': the worker needs the app's "
                "import path to start task processes (Worker(app, app_spec='pkg.module:app'); "
                "the CLI passes it)"
            )
        self.app_spec = app_spec
        self.process_concurrency = process_concurrency or os.cpu_count() or 2
        self._async_tasks = {
            t.name.encode() for t in app.tasks.values() if t.is_async and t.queue in self.queues
        }
        self.max_in_flight = max_in_flight or max(256, concurrency * 32)
        # one hot partition (e.g. a long chain of one key) must not take the whole window
        self.max_in_flight_per_partition = max_in_flight_per_partition or max(
            16, self.max_in_flight // 4
        )
        self.group_id = group_id or app.settings.worker_group()
        self.worker_id = worker_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.shutdown_grace = shutdown_grace
        self.revoke_grace = revoke_grace
        self.create_topics = create_topics
        # Incremental (cooperative-sticky) rebalancing: only moved partitions are revoked.
        # The callbacks below work per partition, so they are correct for both protocols.
        self.cooperative = cooperative
        self.stall_warning = stall_warning
        self._stalls = StallWatch(stall_warning, self.worker_id)
        # "consumer" is KIP-848 (Kafka >= 4.0): the broker assigns partitions incrementally
        # and owns the session and heartbeat settings.
        if group_protocol not in ("classic", "consumer"):
            raise ConfigError(
                f"group_protocol must be 'classic' or 'consumer', not {group_protocol!r}"
            )
        if group_protocol == "consumer" and cooperative:
            raise ConfigError(
                "cooperative applies to the classic protocol only; the consumer "
                "protocol (KIP-848) is always incremental"
            )
        self.group_protocol = group_protocol
        if not heartbeat_interval > 0:
            raise ConfigError(f"heartbeat_interval must be > 0 seconds, got {heartbeat_interval}")
        self.heartbeat_interval = heartbeat_interval
        self.gc_tuning = gc_tuning
        # per-task events (None: as the app says); heartbeats are always on
        self.events = app.events if events is None else events
        self._task_events = TaskEvents(app, self.worker_id) if self.events else None
        self.stats = WorkerStats()
        self._beats = HeartbeatCounters(app.settings.namespace, self.queues)
        # called on the poll thread (see streamtasks.worker.hooks); the counters come first
        self.metrics_port = metrics_port
        self.metrics: WorkerMetrics | None = None
        if metrics or metrics_port is not None:
            self.metrics = WorkerMetrics(
                namespace=app.settings.namespace,
                lag_interval=metrics_lag_interval,
                tasks=app.tasks,
            )
            hooks = [*hooks, self.metrics]
        self._hooks = HookSet([self.stats, self._beats, *hooks], app.settings.namespace)
        self.ready = threading.Event()  # set once the first partitions are assigned
        self._ns = app.settings.namespace
        self._results_topic = results_topic(self._ns)
        self._topics = app.worker_topics(self.queues)
        self._chords_topic = chords_topic(self._ns)
        tasks = {task_topic(self._ns, q) for q in self.queues}
        self._tier_topics = set(self._topics) - tasks - {self._chords_topic}
        self._stop = threading.Event()
        self._force = threading.Event()
        # set when shutdown starts: received tasks not started yet are left for the next owner
        self._draining = threading.Event()
        self._starts_open = True  # see TaskRunning._starts_open
        self._broker = BrokerWatch(app.settings.bootstrap_servers)
        self._parts: Partitions[Job] = Partitions()
        self._abandoned: deque[Job] = deque()  # appended by task threads, drained by poll
        self._no_output: deque[Job] = deque()  # finished without outputs; drained by poll
        self._in_flight = 0

    # -- public control -------------------------------------------------------------------
    def stop(self, *, force: bool = False) -> None:
        """Ask the worker to drain and stop (``force``: stop now, commit only finished work)."""
        if force:
            self._close_starts(self._force)
        self._stop.set()

    def run(self, *, install_signal_handlers: bool = True, burst: bool = False) -> WorkerStats:
        """Consume until :meth:`stop` (or SIGTERM/SIGINT); returns the counters.

        ``burst``: also stop, drained and committed, once every assigned partition was read to
        its end, nothing is in flight and no retry is held for later (see
        :mod:`streamtasks.worker.burst`) — for batch jobs and tests.
        """
        if self.metrics is None or self.metrics_port is None:
            return self._run(install_signal_handlers, burst)
        # first: a port in use fails before anything connects
        stop_metrics = serve_metrics(self.metrics.registry, self.metrics_port)
        try:
            return self._run(install_signal_handlers, burst)
        finally:
            stop_metrics()

    def _run(self, install_signal_handlers: bool, burst: bool) -> WorkerStats:
        settings = self.app.settings
        if self.create_topics:
            self.app.apply_topics(self.queues)
        restore = self._install_signals() if install_signal_handlers else None
        self._s = Session.open(
            self.app,
            SessionSpec(
                worker_id=self.worker_id,
                group_id=self.group_id,
                cooperative=self.cooperative,
                group_protocol=self.group_protocol,
                burst=burst,
                queues=self.queues,
                concurrency=self.concurrency,
                async_concurrency=self.async_concurrency if self._async_tasks else None,
                process_concurrency=self.process_concurrency if self._process_tasks else None,
                app_spec=self.app_spec,
                max_in_flight=self.max_in_flight,
                max_in_flight_per_partition=self.max_in_flight_per_partition,
                stats_interval_ms=self._hooks.stats_interval_ms,
                events=self.events,
            ),
            done=self._complete,
            fatal=functools.partial(self.stop, force=True),
            stats=self._hooks.consumer_stats,
        )
        beats = HeartbeatSender(
            self.app,
            self._beats,
            worker_id=self.worker_id,
            group_id=self.group_id,
            queues=self.queues,
            concurrency=self.concurrency,
            interval=self.heartbeat_interval,
            events=self.events,
        ).start()
        log.info(
            "worker started",
            worker_id=self.worker_id,
            group=self.group_id,
            topics=self._topics,
            concurrency=self.concurrency,
            max_in_flight=self.max_in_flight,
        )
        watch = groupwatch.AssignmentWatch(
            settings,
            self.group_id,
            lambda: bool(self._parts.trackers),
            what="worker",
            first=groupwatch.FIRST_WARNING,
        ).start()
        try:
            self._s.consumer.subscribe(
                self._topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            with tuned_gc(self.gc_tuning):
                self._loop()
                self._drain_for_shutdown()
        finally:
            watch.stop()
            self._s.close(wait_for_pool=not self._force.is_set())
            beats.stop()  # the OFFLINE heartbeat, once the group was left
            if restore is not None:
                restore()
        log.info("worker stopped", worker_id=self.worker_id, **vars(self.stats))
        return self.stats

    # -- the poll loop ----------------------------------------------------------------------
    def _loop(self) -> None:
        consumer, flow = self._s.consumer, self._s.flow
        drain = self._s.drain
        while not self._stop.is_set():
            room = self.max_in_flight - self._in_flight
            msgs: list[Message] = []
            if room > 0 and not flow.paused:
                # consume(n, t) waits out all of t unless n records are ready: take what is
                # there without waiting, and block only in poll(), which wakes on one record.
                msgs = consumer.consume(min(_BATCH, room), 0)
                if not msgs and not self._in_flight:
                    one = consumer.poll(flow.idle_timeout(now_ms()))
                    msgs = [one] if one is not None else []
            elif flow.paused:
                one = consumer.poll(0)  # serves rebalances; paused, so no records expected
                msgs = [one] if one is not None else []  # ... but never drop one
            for msg in msgs:
                err = msg.error()
                if drain is not None:
                    _drain_saw(drain, msg, err)
                if err is not None:
                    if not reader.is_partition_eof(err):
                        self._on_consumer_error(err)
                    continue
                try:
                    self._dispatch(msg)
                except Exception:  # last resort (decisions are guarded in _dispatch): the
                    # process stays up; a record left unfinished is reported as a stall
                    log.exception(
                        "error dispatching a record",
                        topic=msg.topic(),
                        partition=msg.partition(),
                        offset=msg.offset(),
                    )
            # nothing new while tasks run: wait briefly for the next acknowledgement
            self._s.outputs.poll(0.001 if not msgs and self._in_flight else 0)
            self._after_poll()
            if drain is not None and self._burst_done(drain):
                log.info("burst: drained, stopping", worker_id=self.worker_id)
                self.stop()
            self._broker.tick(consumer)

    def _burst_done(self, drain: DrainWatch) -> bool:
        return (
            self.ready.is_set()
            and not self._in_flight
            and not self._abandoned
            and not self._no_output
            and not self._s.flow.holding()
            and drain.drained()
        )

    def _after_poll(self) -> None:
        while self._abandoned:
            job = self._abandoned.popleft()
            self._complete(job, finished=False)
        while self._no_output:
            self._complete(self._no_output.popleft(), finished=True)
        self._store_offsets()
        self._stalls.check(self._parts.trackers, self._stall_reason)
        self._s.flow.settle()
        self._s.flow.release_due(now_ms())
        self._s.flow.rest()
        self._s.flow.window(self._in_flight, may_resume=not self._stop.is_set())

    def _stall_reason(self, tp: TP) -> str:
        if self._force.is_set() or self._stop.is_set():
            return "stopping"
        waiting = self._parts.waiting(tp)
        return (
            f"its task (or an output's acknowledgement) has not finished; {self._in_flight} "
            f"in flight, {waiting} queued behind busy keys of this partition"
        )

    def _on_consumer_error(self, err: KafkaError) -> None:
        if err.fatal():
            log.error("fatal consumer error; stopping", error=err.str())
            self.stop(force=True)
        else:
            log.warning("consumer error", error=err.str(), code=err.name())

    def _dispatch(self, msg: Message) -> None:
        topic, partition, offset = msg.topic(), msg.partition(), msg.offset()
        assert topic is not None and partition is not None and offset is not None
        tp = (topic, partition)
        flow = self._s.flow
        if flow.is_held(tp):
            return  # fetched before the hold took effect; it is fetched again on resume
        headers = msg.headers()
        hdrs = list(headers.items()) if isinstance(headers, dict) else headers
        rec = Record(topic, partition, offset, msg.key(), msg.value(), hdrs, msg.timestamp()[1])
        if topic == self._chords_topic:
            self._join(rec)
            return
        preset: Callable[[], Outcome] | None = None
        try:
            if topic in self._tier_topics:
                preset = self._hold_if_early(rec)
                if preset is None and flow.is_held(tp):
                    return
        except Exception as exc:  # decision code must not end the process: a dead letter
            log.exception("error deciding on a record on the poll thread", **rec.log_fields())
            preset = functools.partial(self._s.executor.outcomes.internal_error, rec, exc)
        tracker = self._parts.admit(tp, offset)
        if tracker is None:
            return  # not ours (any more) or a re-delivery already in progress
        self._hooks.received(rec)
        self._in_flight += 1
        flow.received(tp, tracker.unfinished)
        job = Job(rec, self._parts.generation(tp), preset=preset)
        if self._task_events is not None:
            job.received_ms = now_ms()
        if self._parts.queue_behind_key(tp, rec.key, job):
            return  # same key in flight: runs after it, in offset order
        self._submit(job)

    def _hold_if_early(self, rec: Record) -> Callable[[], Outcome] | None:
        """A retry-tier record: held (its partition paused) until its ``st-not-before``; a
        header that is not a time makes it a dead letter (returned, to run on a task thread)."""
        due = hdr.header(rec.headers, hdr.NOT_BEFORE)
        if due is None:
            return None
        try:
            due_ms = int(due)
        except ValueError:
            bad = ValueError(f"{hdr.NOT_BEFORE} header {due[:100]!r} is not a time in epoch ms")
            return functools.partial(self._s.executor.outcomes.dead_letter, rec, "bad-header", bad)
        if due_ms > now_ms():
            self._s.flow.hold((rec.topic, rec.partition), rec.offset, due_ms)
        return None

    def _install_signals(self) -> Callable[[], None] | None:
        return on_stop_signals(drain_then_force(self.stop))


def _drain_saw(drain: DrainWatch, msg: Message, err: KafkaError | None) -> None:
    tp = (str(msg.topic()), int(msg.partition() or 0))
    if err is None:
        drain.seen(tp, int(msg.offset() or 0))
    elif reader.is_partition_eof(err):
        drain.at_end(tp, int(msg.offset() or 0))
