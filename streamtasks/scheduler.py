"""The scheduler process: publishes periodic task events, once per fire time, with replicas.

Leader election: every replica joins the consumer group ``{ns}.{app}.scheduler`` on the
one-partition, compacted ``{ns}.scheduler`` topic; the member that owns its partition 0 is
the leader. A killed leader's partition moves to another replica after the session timeout,
a stopped one's at once.

State: the leader reads the topic from the beginning (the last fired time per schedule) and
only then starts firing; after each fire it writes the new last-fired record.

Invariants:

* a fire is published as a normal task whose id is derived from (schedule, fire time)
  (:func:`~streamtasks.schedules.fire_task_id`), so publishing it twice is recognisably the
  same fire, and workers run a fire id at most once;
* the last-fired record is written only after the broker acknowledged the task, so a crash
  can repeat a fire (same id: not run twice) but never lose one;
* which fires are due — including misfires after downtime — is the pure
  :func:`~streamtasks.schedules.due_fires`.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import FrameType
from typing import Any

import structlog

from streamtasks.app import App
from streamtasks.config import KafkaValue
from streamtasks.errors import BrokerError, ConfigError, DecodeError
from streamtasks.kafka import Consumer, KafkaError, Message, TopicPartition, clients, reader
from streamtasks.schedules import due_fires, fire_task_id
from streamtasks.wire.codec import load_builtin_schema
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.topics import scheduler_topic
from streamtasks.worker import groupwatch
from streamtasks.worker.stopsignals import on_stop_signals

__all__ = ["LastFire", "Scheduler", "read_fires", "read_state"]

log = structlog.get_logger("streamtasks.scheduler")

STATE_SCHEMA: dict[str, Any] = load_builtin_schema("scheduler_state.avsc")


class Scheduler:
    """Runs as one of any number of replicas; only the leader publishes."""

    def __init__(
        self,
        app: App,
        *,
        tick: float = 0.1,
        replica_id: str | None = None,
        create_topics: bool = True,
    ) -> None:
        if not app.schedules:
            raise ConfigError(
                f"app {app.name!r} has no schedules: declare some with @app.periodic(...) or "
                "app.schedule(task, ...)"
            )
        self.app = app
        self.tick = tick
        self.replica_id = (
            replica_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        self.create_topics = create_topics
        self.group_id = f"{app.settings.namespace}.{app.name}.scheduler"
        self.topic = scheduler_topic(app.settings.namespace)
        self.last_fired: dict[str, datetime] = {}
        self.fired = 0
        self._state_schema = app.codec.register(STATE_SCHEMA)
        self._leader = False
        self._loaded = False
        self._started = datetime.now(UTC)
        self._stop = threading.Event()

    @property
    def is_leader(self) -> bool:
        return self._leader and self._loaded

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, install_signal_handlers: bool = True) -> None:
        if self.create_topics:
            queues = {self.app.tasks[s.task_name].queue for s in self.app.schedules.values()}
            self.app.apply_topics(sorted(queues))
        restore = self._install_signals() if install_signal_handlers else None
        overrides: dict[str, KafkaValue] = {
            "client.id": self.replica_id,
            "enable.auto.commit": False,
            "enable.partition.eof": True,
        }
        consumer = clients.make_consumer(self.app.settings.consumer(self.group_id, **overrides))
        log.info(
            "scheduler started",
            replica=self.replica_id,
            group=self.group_id,
            schedules=sorted(self.app.schedules),
        )
        watch = groupwatch.AssignmentWatch(
            self.app.settings,
            self.group_id,
            lambda: self._leader,
            what="scheduler",
            standby_ok=True,
            first=groupwatch.FIRST_WARNING,
        ).start()
        tail = reader.TopicTail(consumer, self.topic, on_error=_read_error, batch=500)
        try:
            consumer.subscribe(
                [self.topic],
                on_assign=functools.partial(self._on_assign, tail),
                on_revoke=self._on_revoke,
                on_lost=self._on_revoke,
            )
            while not self._stop.is_set():
                for msg in tail.take(self.tick):
                    self._on_state(msg)
                if self._leader and not self._loaded and tail.caught_up:
                    self._loaded = True
                    log.info(
                        "leading",
                        replica=self.replica_id,
                        last_fired={k: v.isoformat() for k, v in self.last_fired.items()},
                    )
                if self.is_leader:
                    self._fire_due()
        finally:
            watch.stop()
            self._leader = False
            consumer.close()  # leaves the group: another replica takes over at once
            self.app.close()
            if restore is not None:
                restore()
        log.info("scheduler stopped", replica=self.replica_id, fired=self.fired)

    # -- leadership -------------------------------------------------------------------------
    def _on_assign(
        self, tail: reader.TopicTail, _consumer: Consumer, partitions: list[TopicPartition]
    ) -> None:
        if not partitions:
            return
        # read all state from the beginning before firing anything
        tail.start({p.partition: reader.BEGINNING for p in partitions})
        self._leader, self._loaded = True, False
        log.info("became leader; loading state", replica=self.replica_id)

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions and self._leader:
            log.info("leadership lost", replica=self.replica_id)
        self._leader = self._loaded = False

    def _on_state(self, msg: Message) -> None:
        if msg.value() is None:
            return
        try:
            _, rec = self.app.codec.decode(msg.value(), expect=self._state_schema)
        except DecodeError as exc:
            log.warning("undecodable scheduler state record", error=str(exc))
            return
        fired = datetime.fromtimestamp(rec["last_fired"] / 1000, UTC)
        name = rec["schedule"]
        if name not in self.last_fired or fired > self.last_fired[name]:
            self.last_fired[name] = fired

    # -- firing ---------------------------------------------------------------------------
    def _fire_due(self) -> None:
        now = datetime.now(UTC)
        for schedule in self.app.schedules.values():
            last = self.last_fired.get(schedule.name)
            for fire in due_fires(schedule, last, now, started_at=self._started):
                if not self.is_leader:
                    return
                self._publish(
                    schedule.name, schedule.task_name, schedule.args, dict(schedule.kwargs), fire
                )

    def _publish(
        self,
        name: str,
        task_name: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        fire: datetime,
    ) -> None:
        task_id = fire_task_id(name, fire)
        res = self.app.tasks[task_name].apply_async(args, kwargs, task_id=task_id, key=task_id)
        res.wait_sent(30.0)  # acknowledged before the fire is recorded
        state = {
            "schedule": name,
            "last_fired": int(fire.timestamp() * 1000),
            "task_id": task_id,
            "leader": self.replica_id,
            "updated_at": now_ms(),
        }
        value = self.app.codec.encode(self._state_schema, state)
        self.app.produce(self.topic, value, key=name)
        if self.app.flush(30.0):
            raise BrokerError(f"could not record fire {task_id}")
        self.last_fired[name] = fire
        self.fired += 1
        log.info("fired", schedule=name, fire_time=fire.isoformat(), task_id=task_id)

    def _install_signals(self) -> Callable[[], None] | None:
        def handler(signum: int, _frame: FrameType | None) -> None:
            log.info("stopping", signal=signal.Signals(signum).name)
            self.stop()

        return on_stop_signals(handler)


def _read_error(err: KafkaError) -> None:
    log.warning("scheduler consumer error", error=err.str())


@dataclass(frozen=True, slots=True)
class LastFire:
    """The last fire of one schedule as ``{ns}.scheduler`` records it."""

    fired: datetime
    task_id: str
    leader: str


def read_fires(app: App, *, timeout: float = 10.0) -> dict[str, LastFire]:
    """The last fire of each schedule as recorded in ``{ns}.scheduler`` (read to its end)."""
    schema = app.codec.register(STATE_SCHEMA)
    topic = scheduler_topic(app.settings.namespace)
    out: dict[str, LastFire] = {}
    for msg in reader.read_to_end(app, [topic], timeout=timeout):
        if msg.value() is None:
            continue
        try:
            _, rec = app.codec.decode(msg.value(), expect=schema)
        except DecodeError:
            continue
        fired = datetime.fromtimestamp(rec["last_fired"] / 1000, UTC)
        if rec["schedule"] not in out or fired > out[rec["schedule"]].fired:
            out[rec["schedule"]] = LastFire(fired, rec["task_id"], rec["leader"])
    return out


def read_state(app: App, *, timeout: float = 10.0) -> dict[str, tuple[datetime, str]]:
    """The last fire of each schedule as recorded in ``{ns}.scheduler`` (read to its end)."""
    return {name: (f.fired, f.task_id) for name, f in read_fires(app, timeout=timeout).items()}
