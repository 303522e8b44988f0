"""Which scheduled fires already ran: so a fire published twice is run at most once.

A scheduler may publish one fire twice (a leader that died between publishing a fire and
recording it); both copies carry the same deterministic task id. The worker asks this index
before running a fire id: it holds the ids of scheduled tasks with a final result, read from
the results topic (its ``st-status`` header and key only — nothing is decoded) plus the ones
this worker finished itself.

Invariants: only ids that parse as fire ids are kept, bounded in number; until the index has
read the results topic to its end once, :meth:`FiredIndex.done` waits (bounded) for it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streamtasks import _kafka
from streamtasks.schedules import parse_fire_task_id
from streamtasks.topics import results_topic

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["FiredIndex"]

log = structlog.get_logger("streamtasks.dedupe")

_FINAL = {b"SUCCESS", b"FAILURE", b"DEAD", b"EXPIRED", b"REVOKED"}
_MAX_IDS = 1_000_000


class FiredIndex:
    def __init__(self, app: App) -> None:
        self._app = app
        self._topic = results_topic(app.settings.namespace)
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._run, name="streamtasks-fired", daemon=True)
        self._thread.start()

    @staticmethod
    def is_fire(task_id: str) -> bool:
        return task_id.startswith("sched.") and parse_fire_task_id(task_id) is not None

    def add(self, task_id: str) -> None:
        with self._lock:
            self._ids[task_id] = None
            if len(self._ids) > _MAX_IDS:
                self._ids.popitem(last=False)

    def done(self, task_id: str, *, wait: float = 10.0) -> bool:
        self._caught_up.wait(wait)
        with self._lock:
            return task_id in self._ids

    def _run(self) -> None:
        cfg = self._app.settings.consumer(None, **{"enable.partition.eof": True})
        consumer = _kafka.make_consumer(cfg)
        try:
            md = consumer.list_topics(self._topic, timeout=10)
            parts = sorted(md.topics[self._topic].partitions)
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in parts])
            pending = set(parts)
            while not self._closed.is_set():
                msgs = consumer.consume(1000, 0)
                if not msgs:
                    one = consumer.poll(0.1)
                    msgs = [one] if one is not None else []
                for msg in msgs:
                    self._on(msg, pending)
        except Exception:
            log.exception("fired-task index stopped; scheduled fires may run twice")
            self._caught_up.set()
        finally:
            consumer.close()

    def _on(self, msg: Any, pending: set[int]) -> None:
        err = msg.error()
        if err is not None:
            if err.code() == KafkaError._PARTITION_EOF:
                pending.discard(msg.partition())
                if not pending:
                    self._caught_up.set()
            return
        key = msg.key()
        if key is None or not key.startswith(b"sched."):
            return
        status = dict(msg.headers() or ()).get("st-status")
        if status in _FINAL:
            self.add(key.decode(errors="replace"))

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)
