"""A thread that serves one producer's delivery callbacks, for threads that wait on them.

A thread waiting for an acknowledgement used to serve it itself, in ``producer.poll(1.0)``. But
``poll`` returns only when it serves an event, so when another thread (a ``flush()``, an early
send, a sender's ``poll(0)``) served that thread's callback first, the waiter slept out the
whole second. With a :class:`Poller` running, waiters block on their
:class:`~streamtasks.kafka.delivery.Delivery` event and never poll, so whichever thread serves
the callback wakes them at once.

The thread runs only while someone waits: it starts with the first waiter
(:meth:`Poller.waiting`) and ends once nobody has waited for :data:`IDLE_EXIT` seconds. A
thread that keeps polling costs a sender that no longer waits ~20 us per send, in GIL hand-offs
for every batch of delivery reports its own ``poll(0)`` would serve anyway (bench/README.md,
issue 18).

Invariants: at most one thread per poller, running whenever a waiter is inside
:meth:`Poller.waiting`; :meth:`Poller.stop` returns only once the thread no longer touches
the producer (so the producer may then be flushed at exit or dropped); an exception from a
callback is logged and the thread keeps serving.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import structlog

__all__ = ["IDLE_EXIT", "Poller"]

log = structlog.get_logger("streamtasks.kafka")

#: how long one ``poll`` blocks; it returns early on every event, so this only bounds how long
#: :meth:`Poller.stop` waits for the thread
POLL_INTERVAL = 0.1

#: seconds without a waiter after which the thread ends (the next waiter starts a new one)
IDLE_EXIT = 0.25


class Poller:
    """``with Poller(producer).waiting(): ...``: ``producer.poll()`` on a daemon thread while
    someone waits (and :data:`IDLE_EXIT` seconds after), until :meth:`stop`."""

    def __init__(
        self,
        producer: Any,
        *,
        name: str = "streamtasks-producer-poller",
        idle_exit: float = IDLE_EXIT,
    ) -> None:
        self._producer = producer
        self._name = name
        self._idle_exit = idle_exit
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiters = 0
        self._last_left = time.monotonic()
        self.starts = 0  # how many threads were started (for tests and benchmarks)

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def stopped(self) -> bool:
        return self._stopping.is_set()

    @contextmanager
    def waiting(self) -> Iterator[None]:
        """Keep the thread running (start it unless it runs) while the block waits."""
        with self._lock:
            self._waiters += 1
            if not self.running and not self._stopping.is_set():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
                self.starts += 1
        try:
            yield
        finally:
            with self._lock:
                self._waiters -= 1
                self._last_left = time.monotonic()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and wait for it (a stopped poller does not start again)."""
        self._stopping.set()
        with self._lock:
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _idle(self) -> bool:
        return self._waiters == 0 and time.monotonic() - self._last_left >= self._idle_exit

    def _run(self) -> None:
        poll = self._producer.poll
        while not self._stopping.is_set():
            try:
                poll(POLL_INTERVAL)
            except Exception:  # a user's on_delivery raised: theirs to see, ours to survive
                log.exception("a delivery callback raised; the producer's poller goes on")
            if self._idle():
                with self._lock:  # (a waiter that comes now starts a new thread)
                    if self._idle():
                        self._thread = None
                        return
