"""A thread that serves one producer's delivery callbacks, for threads that wait on them.

A thread waiting for an acknowledgement used to serve it itself, in ``producer.poll(1.0)``. But
``poll`` returns only when it serves an event, so when another thread (a ``flush()``, an early
send, a sender's ``poll(0)``) served that thread's callback first, the waiter slept out the
whole second. With a :class:`Poller` running, waiters block on their
:class:`~streamtasks.kafka.delivery.Delivery` event and never poll, so whichever thread serves
the callback wakes them at once.

Invariants: at most one thread per poller; :meth:`Poller.stop` returns only once the thread
no longer touches the producer (so the producer may then be flushed at exit or dropped); an
exception from a callback is logged and the thread keeps serving.
"""

from __future__ import annotations

import threading
from typing import Any

import structlog

__all__ = ["Poller"]

log = structlog.get_logger("streamtasks.kafka")

#: how long one ``poll`` blocks; it returns early on every event, so this only bounds how long
#: :meth:`Poller.stop` waits for the thread
POLL_INTERVAL = 0.1


class Poller:
    """``Poller(producer).start()``: ``producer.poll()`` on a daemon thread until :meth:`stop`."""

    def __init__(self, producer: Any, *, name: str = "streamtasks-producer-poller") -> None:
        self._producer = producer
        self._name = name
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the thread unless it runs (idempotent; starts a new one if it died)."""
        if self.running:
            return
        with self._lock:
            if self.running or self._stopping.is_set():
                return
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (a stopped poller does not start again)."""
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _run(self) -> None:
        poll = self._producer.poll
        while not self._stopping.is_set():
            try:
                poll(POLL_INTERVAL)
            except Exception:  # a user's on_delivery raised: theirs to see, ours to survive
                log.exception("a delivery callback raised; the producer's poller goes on")
