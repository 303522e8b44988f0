"""Worker-side indexes of task ids read from a topic: fires that already ran, revoked tasks.

* :class:`FiredIndex` — a scheduler may publish one fire twice (a leader that died between
  publishing and recording it); both copies carry the same deterministic id. It holds the ids
  of scheduled tasks with a final result (read from the results topic's key and ``st-status``
  header — nothing is decoded) plus those this worker finished itself.
* :class:`RevokedIndex` — ids revoked with ``AsyncResult.revoke()`` / ``streamtasks revoke``,
  kept in the compacted ``{ns}.revoked`` topic, so a revoke survives worker restarts.

Invariants: an index is bounded in size; until it has read its topic to the end once,
:meth:`TopicKeyIndex.contains` waits (bounded) for it, so a restarted worker does not run what
it should skip.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import structlog
from confluent_kafka import OFFSET_BEGINNING, KafkaError, TopicPartition

from streamtasks.kafka import clients
from streamtasks.schedules import parse_fire_task_id
from streamtasks.wire.topics import results_topic, revoked_topic

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["FiredIndex", "RevokedIndex", "TopicKeyIndex"]

log = structlog.get_logger("streamtasks.dedupe")

_FINAL = {b"SUCCESS", b"FAILURE", b"DEAD", b"EXPIRED", b"REVOKED"}
_MAX_IDS = 1_000_000


class TopicKeyIndex:
    """The set of keys of ``topic`` that ``accept`` picks, kept current by a thread."""

    def __init__(self, app: App, topic: str, accept: Callable[[Any], str | None]) -> None:
        self._app = app
        self._topic = topic
        self._accept = accept
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._closed = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"streamtasks-index-{topic}", daemon=True
        )
        self._thread.start()

    def add(self, key: str) -> None:
        with self._lock:
            self._ids[key] = None
            if len(self._ids) > _MAX_IDS:
                self._ids.popitem(last=False)

    def discard(self, key: str) -> None:
        with self._lock:
            self._ids.pop(key, None)

    def contains(self, key: str, *, wait: float = 10.0) -> bool:
        # Called for every task by every task thread: no lock here (Event.wait takes one even
        # when set, and 8 threads queueing on it cost a context switch per task). A single
        # dict lookup is atomic; the lock only orders add/discard against each other.
        if not self._caught_up.is_set():
            self._caught_up.wait(wait)
        return key in self._ids

    def _run(self) -> None:
        cfg = self._app.settings.consumer(None, **{"enable.partition.eof": True})
        consumer = clients.make_consumer(cfg)
        try:
            md = consumer.list_topics(self._topic, timeout=10)
            meta = md.topics.get(self._topic)
            parts = sorted(meta.partitions) if meta is not None and meta.error is None else []
            if not parts:
                log.warning(
                    "index topic missing; run `streamtasks topics apply`", topic=self._topic
                )
                self._caught_up.set()
                return
            consumer.assign([TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in parts])
            pending = set(parts)
            while not self._closed.is_set():
                msgs = consumer.consume(1000, 0)
                if not msgs:
                    one = consumer.poll(0.1)
                    msgs = [one] if one is not None else []
                for msg in msgs:
                    err = msg.error()
                    if err is not None:
                        if err.code() == KafkaError._PARTITION_EOF:
                            pending.discard(msg.partition())
                            if not pending:
                                self._caught_up.set()
                        continue
                    self._on(msg)
        except Exception:
            log.exception("task id index stopped", topic=self._topic)
            self._caught_up.set()
        finally:
            consumer.close()

    def _on(self, msg: Any) -> None:
        key = self._accept(msg)
        if key is not None:
            self.add(key)
        elif msg.value() is None and msg.key() is not None:
            self.discard(msg.key().decode(errors="replace"))  # a tombstone removes it

    def close(self) -> None:
        self._closed.set()
        self._thread.join(5)


def _final_fire(msg: Any) -> str | None:
    key = msg.key()
    if key is None or not key.startswith((b"sched.", b"wf.", b"err.")):
        return None
    if dict(msg.headers() or ()).get("st-status") in _FINAL:
        return str(key.decode(errors="replace"))
    return None


def _revoked(msg: Any) -> str | None:
    key = msg.key()
    if key is None or msg.value() is None:
        return None
    return str(key.decode(errors="replace"))


class FiredIndex(TopicKeyIndex):
    def __init__(self, app: App) -> None:
        super().__init__(app, results_topic(app.settings.namespace), _final_fire)

    @staticmethod
    def is_fire(task_id: str) -> bool:
        """A deterministic id: a scheduled fire, a workflow task or an error callback."""
        if task_id.startswith(("wf.", "err.")):
            return True
        return task_id.startswith("sched.") and parse_fire_task_id(task_id) is not None

    def done(self, task_id: str, *, wait: float = 10.0) -> bool:
        return self.contains(task_id, wait=wait)


class RevokedIndex(TopicKeyIndex):
    def __init__(self, app: App) -> None:
        super().__init__(app, revoked_topic(app.settings.namespace), _revoked)
