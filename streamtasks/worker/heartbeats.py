"""Worker heartbeats: what the worker counts (a hook) and the thread that reports it.

Every worker process — each child of ``worker --processes`` too — sends a
:class:`~streamtasks.wire.events.WorkerHeartbeat` to ``{ns}.events`` every ``interval``
seconds (``Worker(heartbeat_interval=...)``, default 5 s) and one with state ``OFFLINE`` on a
clean stop; readers take a worker whose last heartbeat is older than three intervals for
offline (:func:`streamtasks.ops.events.is_online`).

* :class:`HeartbeatCounters` is a :class:`~streamtasks.worker.hooks.WorkerHooks`: the counters
  since start, per queue, the in-flight count and the assigned partitions, as the hooks see
  them on the poll thread;
* :class:`HeartbeatSender` is a thread with its own small producer that snapshots them.

Invariants: heartbeats are informational — nothing waits for their acknowledgement, a broker
that is down delays them and never the worker; the counters are taken under one lock, so a
heartbeat is a consistent snapshot; the always-on cost per task is a dictionary increment.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING

import structlog
from confluent_kafka import KafkaError, KafkaException, Message

from streamtasks.config import KafkaValue
from streamtasks.kafka import clients
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.events import (
    COUNTERS,
    WorkerHeartbeat,
    WorkerState,
    event_record,
)
from streamtasks.wire.topics import events_topic, queue_of
from streamtasks.worker.hooks import WorkerHooks

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.worker.outcomes import Record

__all__ = ["HeartbeatCounters", "HeartbeatSender"]

log = structlog.get_logger("streamtasks.worker")

TP = tuple[str, int]
#: a record's outcome (see WorkerHooks.on_finished) -> the heartbeat counter it adds to
_COUNTER_OF = {
    "success": "succeeded",
    "failure": "failed",
    "retry": "retried",
    "dead": "dead",
    "expired": "expired",
    "revoked": "revoked",
    "skipped": "skipped",
}


class HeartbeatCounters(WorkerHooks):
    """The figures a heartbeat reports, kept by the worker's hooks."""

    def __init__(self, ns: str, queues: Sequence[str]) -> None:
        self._ns = ns
        self._lock = threading.Lock()
        self._per_queue: dict[str, dict[str, int]] = {q: dict.fromkeys(COUNTERS, 0) for q in queues}
        #: topic -> its queue's counters (a dict read; the queue's name is found once a topic)
        self._by_topic: dict[str, dict[str, int]] = {}
        self._abandoned = 0
        self._in_flight = 0
        self._partitions: set[TP] = set()
        #: set when the assignment changed: the sender reports it at once, not a beat later
        self.changed = threading.Event()

    def _counts(self, topic: str) -> dict[str, int]:
        """Under the lock: the counters of ``topic``'s queue."""
        counts = self._by_topic.get(topic)
        if counts is None:
            queue = queue_of(topic, self._ns)
            counts = self._per_queue.get(queue)
            if counts is None:
                counts = self._per_queue[queue] = dict.fromkeys(COUNTERS, 0)
            if len(self._by_topic) < 1000:  # topics come from records: bound the cache
                self._by_topic[topic] = counts
        return counts

    def on_received(self, record: Record) -> None:
        counts = self._by_topic.get(record.topic)
        with self._lock:
            (counts or self._counts(record.topic))["received"] += 1
            self._in_flight += 1

    def on_finished(self, record: Record, outcome: str) -> None:
        name = _COUNTER_OF.get(outcome)
        counts = self._by_topic.get(record.topic)
        with self._lock:
            self._in_flight -= 1
            if name is not None:
                counts = counts or self._counts(record.topic)
                counts[name] = counts.get(name, 0) + 1

    def on_abandoned(self, count: int) -> None:
        with self._lock:
            self._in_flight -= count
            self._abandoned += count

    def on_assigned(self, partitions: Sequence[TP]) -> None:
        with self._lock:
            self._partitions.update(partitions)
        self.changed.set()

    def on_revoked(self, partitions: Sequence[TP], *, lost: bool) -> None:
        with self._lock:
            self._partitions.difference_update(partitions)
        self.changed.set()

    def snapshot(self) -> tuple[dict[str, int], dict[str, dict[str, int]], int, list[str]]:
        """``(totals, per queue, in flight, partitions)``, consistent with each other."""
        with self._lock:
            per_queue = {q: dict(c) for q, c in self._per_queue.items()}
            in_flight = max(0, self._in_flight)
            parts = sorted(f"{t}:{p}" for t, p in self._partitions)
            abandoned = self._abandoned
        totals: dict[str, int] = dict.fromkeys(COUNTERS, 0)
        for counts in per_queue.values():
            for name, n in counts.items():
                totals[name] = totals.get(name, 0) + n
        totals["abandoned"] = abandoned
        return totals, per_queue, in_flight, parts


class HeartbeatSender:
    """Sends a worker's heartbeats every ``interval`` seconds from its own thread."""

    def __init__(
        self,
        app: App,
        counters: HeartbeatCounters,
        *,
        worker_id: str,
        group_id: str,
        queues: Sequence[str],
        concurrency: int,
        interval: float,
        events: bool,
    ) -> None:
        self._app = app
        self._counters = counters
        self._topic = events_topic(app.settings.namespace)
        self._interval = interval
        self._template = WorkerHeartbeat(
            worker_id=worker_id,
            host=socket.gethostname(),
            pid=os.getpid(),
            group_id=group_id,
            queues=tuple(queues),
            concurrency=concurrency,
            in_flight=0,
            started_at=now_ms(),
            interval_ms=int(interval * 1000),
            events=events,
        )
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        cfg: dict[str, KafkaValue] = {"client.id": f"{worker_id}-heartbeat", "linger.ms": 0}
        self._producer = clients.make_producer(app.settings.producer(**cfg))
        self._failed_once = False

    def heartbeat(self, state: WorkerState = WorkerState.ONLINE) -> WorkerHeartbeat:
        """The heartbeat to send now."""
        totals, per_queue, in_flight, parts = self._counters.snapshot()
        return dataclasses.replace(
            self._template,
            in_flight=in_flight,
            timestamp=now_ms(),
            state=state,
            counters=totals,
            queue_counters=per_queue,
            partitions=tuple(parts),
        )

    def start(self) -> HeartbeatSender:
        self._send(WorkerState.ONLINE)
        self._thread = threading.Thread(target=self._run, name="streamtasks-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the thread, send the ``OFFLINE`` heartbeat and wait (bounded) for it."""
        self._stop.set()
        self._counters.changed.set()  # wakes the thread
        if self._thread is not None:
            self._thread.join(timeout)
        self._send(WorkerState.OFFLINE)
        if self._producer.flush(timeout):
            log.warning("the offline heartbeat was not acknowledged", timeout=timeout)

    def _run(self) -> None:
        """A beat every interval, and one as soon as the assignment changed."""
        changed = self._counters.changed
        while True:
            changed.wait(self._interval)
            if self._stop.is_set():
                return
            changed.clear()
            self._send(WorkerState.ONLINE)

    def _send(self, state: WorkerState) -> None:
        key, value, headers = event_record(self.heartbeat(state))
        try:
            self._producer.produce(
                self._topic, value, key=key, headers=headers, on_delivery=self._delivered
            )
        except (BufferError, KafkaException) as exc:  # informational: the next one follows
            log.warning("heartbeat not sent", error=str(exc))
        self._producer.poll(0)

    def _delivered(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None and not self._failed_once:
            self._failed_once = True  # once: a broker that is down must not flood the log
            log.warning("heartbeat not acknowledged", error=err.str())
