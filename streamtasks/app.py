"""The application object: settings, the task and schedule registries, and the shared clients.

Invariants: an App holds at most one producer and one result listener per process, created
lazily on first use (so importing a module that defines an App never touches the network; the
producer and its ledger are in :mod:`streamtasks.producing`, the topic layout in
:mod:`streamtasks.topology`);
every task name and every schedule name is registered once; the codec knows every schema the app
can write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, ParamSpec, TypeVar, overload

import structlog

from streamtasks.asyncresult import AsyncResult, ResultListener
from streamtasks.config import Settings
from streamtasks.errors import ArgumentError, BrokerError, ConfigError
from streamtasks.kafka import KafkaException, clients
from streamtasks.producing import Producing
from streamtasks.publisher import Publisher
from streamtasks.retry import NO_RETRY, RetryPolicy
from streamtasks.schedules import DEFAULT_GRACE, EPOCH, Misfire, Schedule
from streamtasks.task import Task, default_task_name
from streamtasks.topology import topic_specs, worker_partitions, worker_topics
from streamtasks.wire.codec import Codec
from streamtasks.wire.envelope import (
    CHORD_JOIN_SCHEMA,
    CHORD_MEMBER_SCHEMA,
    SIGNATURE_SCHEMA,
    register_builtin,
)
from streamtasks.wire.registry import SchemaRegistry, registry_config
from streamtasks.wire.topics import TopicSpec

__all__ = ["App"]

log = structlog.get_logger("streamtasks.app")

P = ParamSpec("P")
R = TypeVar("R")


class App(Producing):
    """A streamtasks application: ``App("billing", bootstrap_servers="kafka:9092")``."""

    def __init__(
        self,
        name: str,
        *,
        bootstrap_servers: str | None = None,
        namespace: str | None = None,
        default_queue: str = "default",
        partitions: int | None = None,
        replication_factor: int | None = None,
        retry: RetryPolicy | None = None,
        retry_tiers: Sequence[float] | None = None,
        max_payload_bytes: int | None = None,
        result_capacity: int | None = None,
        retry_partitions: int | None = None,
        chord_partitions: int | None = None,
        kafka_config: Mapping[str, object] | None = None,
        producer_config: Mapping[str, object] | None = None,
        consumer_config: Mapping[str, object] | None = None,
        client_producer_config: Mapping[str, object] | None = None,
        worker_producer_config: Mapping[str, object] | None = None,
        schema_registry_url: str | None = None,
        schema_registry_config: Mapping[str, object] | None = None,
        events: bool = False,
    ) -> None:
        self.settings = Settings.resolve(
            name,
            bootstrap_servers=bootstrap_servers,
            namespace=namespace,
            default_queue=default_queue,
            partitions=partitions,
            replication_factor=replication_factor,
            retry_tiers=retry_tiers,
            max_payload_bytes=max_payload_bytes,
            result_capacity=result_capacity,
            retry_partitions=retry_partitions,
            chord_partitions=chord_partitions,
            kafka_config=kafka_config,
            producer_config=producer_config,
            consumer_config=consumer_config,
            client_producer_config=client_producer_config,
            worker_producer_config=worker_producer_config,
        )
        self.retry_policy: RetryPolicy = retry if retry is not None else NO_RETRY
        #: per-task lifecycle events on {ns}.events (SENT from send(), the rest from workers;
        #: ``streamtasks worker --events`` turns them on for one worker)
        self.events = events
        self.codec = Codec()
        # with a registry (or STREAMTASKS_SCHEMA_REGISTRY_URL): the Confluent wire format
        registry_conf = registry_config(schema_registry_url, schema_registry_config)
        if registry_conf is not None:
            self.codec.use_registry(SchemaRegistry(registry_conf))
        self.envelope_schema, self.result_schema = register_builtin(self.codec)
        self.signature_schema = self.codec.register(SIGNATURE_SCHEMA)
        self.chord_join_schema = self.codec.register(CHORD_JOIN_SCHEMA)
        self.chord_member_schema = self.codec.register(CHORD_MEMBER_SCHEMA)
        #: sends the task records (``Task.apply_async``, chains and chords go through it)
        self.publisher = Publisher(self)
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.schedules: dict[str, Schedule] = {}
        self._init_producing()
        self._listener: ResultListener | None = None
        self._history: ResultListener | None = None

    def __repr__(self) -> str:
        return f"<App {self.settings.name} ns={self.settings.namespace} tasks={len(self.tasks)}>"

    @property
    def name(self) -> str:
        return self.settings.name

    # -- registry -------------------------------------------------------------------------
    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        retry: RetryPolicy | None = None,
        soft_time_limit: float | None = None,
        time_limit: float | None = None,
        pool: Literal["thread", "process"] = "thread",
        track_started: bool = False,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str | None = None,
        retry: RetryPolicy | None = None,
        soft_time_limit: float | None = None,
        time_limit: float | None = None,
        pool: Literal["thread", "process"] = "thread",
        track_started: bool = False,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Register a typed function as a task (``@app.task`` or ``@app.task(queue=...)``).

        ``retry``: this task's :class:`RetryPolicy` (default: the app's, which by default
        does not retry). ``async def`` functions run on the worker's event loop;
        ``pool="process"`` runs a CPU-bound task in a child process of the worker, where a
        hard ``time_limit`` (seconds) kills it; ``soft_time_limit`` (async or process tasks)
        raises ``SoftTimeLimitExceeded`` inside the task first. Both count as failures.
        ``track_started``: also write a STARTED state when a worker starts the task.
        """

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task_name = name or default_task_name(fn)
            if task_name in self.tasks:
                raise ConfigError(
                    f"task name {task_name!r} is registered twice; pass @app.task(name=...) "
                    "to give one of them another name"
                )
            task = Task(
                self,
                fn,
                name=task_name,
                queue=queue or self.settings.default_queue,
                codec=self.codec,
                retry=retry,
                soft_time_limit=soft_time_limit,
                time_limit=time_limit,
                pool=pool,
                track_started=track_started,
            )
            self.tasks[task_name] = task
            return task

        return register(func) if func is not None else register

    def queues(self) -> list[str]:
        found = {t.queue for t in self.tasks.values()} | {self.settings.default_queue}
        return sorted(found)

    # -- schedules ------------------------------------------------------------------------
    def periodic(
        self,
        cron: str | None = None,
        every: timedelta | None = None,
        *,
        tz: str = "UTC",
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        misfire: Misfire = "skip",
        max_catchup: int = 100,
        grace: timedelta = DEFAULT_GRACE,
        anchor: datetime = EPOCH,
        queue: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register a task that the scheduler sends on a schedule:
        ``@app.periodic(cron="0 7 * * 1-5", tz="Europe/Berlin")`` or
        ``@app.periodic(every=timedelta(seconds=30))``.

        The function is registered as by ``@app.task(queue=, retry=)`` and scheduled as by
        :meth:`schedule` (``name``: the schedule's name, default the task's name); a bad
        schedule or arguments that do not fit the signature fail at import, registering
        nothing.
        """

        def register(fn: Callable[P, R]) -> Task[P, R]:
            task = self.task(queue=queue, retry=retry)(fn)
            try:
                self.schedule(
                    task,
                    cron=cron,
                    every=every,
                    name=name,
                    args=args,
                    kwargs=kwargs,
                    tz=tz,
                    misfire=misfire,
                    max_catchup=max_catchup,
                    grace=grace,
                    anchor=anchor,
                )
            except Exception:
                del self.tasks[task.name]
                raise
            return task

        return register

    def schedule(
        self,
        task: Task[Any, Any] | str,
        *,
        cron: str | None = None,
        every: timedelta | None = None,
        name: str | None = None,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        tz: str = "UTC",
        misfire: Misfire = "skip",
        max_catchup: int = 100,
        grace: timedelta = DEFAULT_GRACE,
        anchor: datetime = EPOCH,
    ) -> Schedule:
        """Send a registered task (or task name) on a schedule, e.g.
        ``app.schedule(report, cron="0 7 * * *", tz="Europe/Berlin", args=("daily",),
        name="daily-report")``. Exactly one of ``cron`` and ``every``; see
        :class:`~streamtasks.schedules.Schedule` for the other options.

        Raises :class:`ConfigError` for a bad or duplicate schedule and :class:`ArgumentError`
        when ``args``/``kwargs`` do not fit the task's signature.
        """
        task_name = task if isinstance(task, str) else task.name
        registered = self.tasks.get(task_name)
        if registered is None or (not isinstance(task, str) and registered is not task):
            raise ConfigError(
                f"cannot schedule {task_name!r}: it is not a task of this app; register it "
                "with @app.task first"
            )
        schedule = Schedule(
            name=name or task_name,
            task_name=task_name,
            args=tuple(args),
            kwargs=dict(kwargs or {}),
            cron=cron,
            tz=tz,
            every=every,
            anchor=anchor,
            misfire=misfire,
            max_catchup=max_catchup,
            grace=grace,
        )
        if schedule.name in self.schedules:
            raise ConfigError(
                f"schedule name {schedule.name!r} is registered twice; pass name=... to give "
                "one of them another name"
            )
        try:
            registered.signature.to_record(schedule.args, dict(schedule.kwargs))
        except ArgumentError as exc:
            raise ArgumentError(f"schedule {schedule.name!r}: {exc}") from exc
        self.schedules[schedule.name] = schedule
        return schedule

    # -- topics ---------------------------------------------------------------------------
    def worker_topics(self, queues: Iterable[str] | None = None) -> list[str]:
        """See :func:`~streamtasks.topology.worker_topics` (default: every queue)."""
        return worker_topics(self.settings, queues if queues is not None else self.queues())

    def worker_partitions(self, queues: Iterable[str] | None = None) -> int:
        """See :func:`~streamtasks.topology.worker_partitions` (default: every queue)."""
        qs = queues if queues is not None else self.queues()
        return worker_partitions(self.settings, qs)

    def topic_specs(self, queues: Iterable[str] | None = None) -> list[TopicSpec]:
        """See :func:`~streamtasks.topology.topic_specs` (default: every queue)."""
        return topic_specs(self.settings, queues if queues is not None else self.queues())

    def apply_topics(
        self, queues: Iterable[str] | None = None, *, timeout: float = 30.0
    ) -> dict[str, str]:
        """Create this app's topics if missing; returns ``{topic: "created" | "exists" |
        "mismatch: N partitions"}``. A topic whose partition count differs from the app's
        config is logged as a warning with the fix."""
        admin = clients.make_admin(self.settings.admin())
        clients.check_reachable(admin, self.settings.require_bootstrap())
        specs = self.topic_specs(queues)
        outcome = clients.apply_topics(
            admin, specs, replication_factor=self.settings.replication_factor, timeout=timeout
        )
        for problem in clients.partition_mismatches(outcome, specs):
            log.warning("topic has the wrong partition count", problem=problem)
        return outcome

    def check_broker(self, timeout: float = 10.0) -> None:
        """Raise :class:`BrokerError` with a fix-it message unless a broker answers within
        ``timeout`` seconds at the configured bootstrap address."""
        bootstrap = self.settings.require_bootstrap()
        clients.check_reachable(
            clients.make_admin(self.settings.admin()), bootstrap, timeout=timeout
        )

    # -- producing ------------------------------------------------------------------------
    def connect(self, timeout: float = 10.0) -> None:
        """Open the producer and this process's result listener now, so the first send does
        not wait for them (the broker handshake, the results topic's end offsets).

        Optional: sending connects lazily. Raises :class:`BrokerError` with a fix-it message
        when no broker answers within ``timeout`` seconds or the results topic is missing."""
        self.check_broker(timeout)
        producer = self.producer
        try:
            # the metadata of the task topics the first send will need
            producer.list_topics(timeout=timeout)
        except KafkaException as exc:
            raise BrokerError(
                f"the broker at {self.settings.bootstrap_servers} did not answer the producer "
                f"within {timeout:g}s: {exc.args[0].str()}"
            ) from exc
        self.results_listener().connect(timeout)

    # -- results --------------------------------------------------------------------------
    def results_listener(self, *, history: bool = False) -> ResultListener:
        """The process-wide result listener (``history=True``: one that reads from the start)."""
        with self._lock:
            if history:
                if self._history is None:
                    self._history = ResultListener(self, from_beginning=True)
                return self._history
            if self._listener is None:
                self._listener = ResultListener(self, from_beginning=False)
            return self._listener

    def AsyncResult(self, task_id: str) -> AsyncResult:
        """A handle on a task sent elsewhere (looked up from the start of the results topic)."""
        return AsyncResult(task_id, app=self)

    def close(self, timeout: float = 10.0) -> int:
        """Flush and release the producer, stop the result listeners (the app stays usable:
        clients are made again on next use). Returns how many records were not delivered
        (each logged as an error with its task id); ``0`` when all were enqueued."""
        undelivered = self._flush_at_exit(timeout)
        for listener in (self._listener, self._history):
            if listener is not None:
                listener.close()
        with self._lock:
            self._listener = self._history = None
            self._producer = None
        self._ledger.clear()
        return undelivered
