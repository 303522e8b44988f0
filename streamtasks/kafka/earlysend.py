"""Sends after a quiet spell go out at once, off the sender's thread.

librdkafka holds every record for ``linger.ms`` in the hope of company. For a sender that
sends a task now and then (a web service, one task per request) that is pure delay: half of
enqueue->done at 200 tasks/s (bench/README.md, issue 18). :class:`EarlySender` watches the
sends; when one comes after ``quiet`` seconds without any, its own thread calls
``producer.flush(wait)``. While a flush is under way librdkafka sends without lingering, so
the record leaves at once, and the sender does not wait for it. Back-to-back sends keep
batching: they are never quiet.

Invariants: it only ever calls ``flush`` (which also serves delivery callbacks, as ``poll``
does on the sender's thread), so it changes when records leave, never which or in what
order; :meth:`sent` costs the sender a clock read and, after a quiet spell, an
``Event.set``; :meth:`close` ends the thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

__all__ = ["IDLE_SEND_WAIT", "EarlySender", "linger_seconds"]

#: seconds one early flush waits for the acknowledgement (it returns as soon as the broker
#: answered, ~0.2-0.5 ms here; a bare flush(0) can end before librdkafka's broker thread saw it,
#: and then the record waits out the linger after all)
IDLE_SEND_WAIT = 0.001


def linger_seconds(config: dict[str, Any]) -> float:
    """The producer ``config``'s linger in seconds (librdkafka's default, 5 ms, if unset)."""
    value = config.get("linger.ms", config.get("queue.buffering.max.ms", 5))
    try:
        return max(0.0, float(value) / 1000)
    except (TypeError, ValueError):
        return 0.005


class EarlySender:
    """Flushes ``producer`` on a thread of its own when a send comes after a quiet spell."""

    def __init__(
        self,
        producer: Any,
        *,
        quiet: float,
        wait: float = IDLE_SEND_WAIT,
        name: str = "streamtasks-early-send",
    ) -> None:
        self._producer = producer
        self._quiet = quiet
        self._wait = wait
        self._last = float("-inf")
        self._wake = threading.Event()
        self._closed = False
        self.flushes = 0  # how many early flushes ran (for tests and benchmarks)
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def sent(self) -> None:
        """Records were just produced: send them at once if nothing was sent for a while."""
        now = time.monotonic()
        if now - self._last >= self._quiet:
            self._wake.set()
        self._last = now

    def _run(self) -> None:
        wake = self._wake
        while True:
            wake.wait()
            if self._closed:
                return
            wake.clear()
            self._producer.flush(self._wait)
            self.flushes += 1

    def close(self, timeout: float = 1.0) -> None:
        """End the thread (a flush under way ends within ``wait``)."""
        self._closed = True
        self._wake.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)
