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
from typing import TYPE_CHECKING, Any, Final

import structlog

from streamtasks.kafka import reader
from streamtasks.schedules import parse_fire_task_id
from streamtasks.wire import headers as hdr
from streamtasks.wire.topics import results_topic, revoked_topic

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["FiredIndex", "RevokedIndex", "TopicKeyIndex"]

log = structlog.get_logger("streamtasks.dedupe")

_FINAL = {b"SUCCESS", b"FAILURE", b"DEAD", b"EXPIRED", b"REVOKED"}
_MAX_IDS = 1_000_000
#: the revoked-ids reader fetches with at least this wait. The topic is written rarely, and
#: an empty fetch costs the broker a request each wait (on the embedded broker at the tests'
#: 10 ms, 6-7 % of a core per reader). Kafka answers a waiting fetch as soon as a record
#: arrives, so a revoke is seen at once there; a broker that holds an empty fetch to its
#: deadline (the embedded Tansu) delivers a revoke up to this much later.
REVOKED_FETCH_WAIT_MS: Final = 250


class TopicKeyIndex:
    """The set of keys of ``topic`` that ``accept`` picks, kept current by a thread."""

    def __init__(
        self,
        app: App,
        topic: str,
        accept: Callable[[Any], str | None],
        *,
        min_fetch_wait_ms: int | None = None,
    ) -> None:
        self._app = app
        self._topic = topic
        self._accept = accept
        self._min_fetch_wait_ms = min_fetch_wait_ms
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()
        self._caught_up = threading.Event()
        self._ready = False  # True once contains() saw _caught_up set
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
        if not self._ready:  # a plain attribute read once caught up (is_set is a call)
            self._ready = self._caught_up.wait(wait)
        return key in self._ids

    def _run(self) -> None:
        try:
            consumer = reader.open_reader(self._app, min_fetch_wait_ms=self._min_fetch_wait_ms)
        except Exception:  # a config librdkafka refuses: do not leave contains() waiting
            log.exception("task id index stopped", topic=self._topic)
            self._caught_up.set()
            return
        try:
            parts = reader.partitions_of(consumer, self._topic)
            if not parts:
                log.warning(
                    "index topic missing; run `streamtasks topics apply`", topic=self._topic
                )
                self._caught_up.set()
                return
            tail = reader.TopicTail(consumer, self._topic)
            tail.start(dict.fromkeys(parts, reader.BEGINNING))
            while not self._closed.is_set():
                for msg in tail.take(0.1):
                    self._on(msg)
                if tail.caught_up:
                    self._caught_up.set()
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
    if dict(msg.headers() or ()).get(hdr.STATUS) in _FINAL:
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
        super().__init__(
            app,
            revoked_topic(app.settings.namespace),
            _revoked,
            min_fetch_wait_ms=REVOKED_FETCH_WAIT_MS,
        )
