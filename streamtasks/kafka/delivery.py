"""Producing through the boundary: the acknowledgement holders and the one produce loop.

* :class:`Delivery` — the broker's acknowledgement of one produced record (a handle waits on it);
* :class:`Acks` — the failures among many records' acknowledgements (a batch checks it once);
* :func:`produce_with_room` — produce one record, serving delivery callbacks while the
  producer's local queue is full (``BufferError``) instead of failing (or, on a thread that
  must not poll the producer, sleeping until the polling thread has made room).

Invariants: a record handed to :func:`produce_with_room` is either enqueued (and then its
``on_delivery`` runs exactly once, from ``producer.poll``/``flush``) or the call raises; the
wait for room is the producer's own ``poll``, so acknowledgements keep flowing meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from streamtasks.wire.topics import Headers

__all__ = ["Acks", "Delivery", "OnDelivery", "produce_with_room"]

#: a confluent-kafka delivery callback
OnDelivery = Callable[["KafkaError | None", "Message"], None]


class Delivery:
    """The broker's acknowledgement of one produced record (set from a delivery callback).

    A thread that needs it blocks in :meth:`wait`, on an event the callback sets, whichever
    thread serves the callback (the producer's poller, a ``flush()`` elsewhere, a sender's
    ``poll(0)``); the event is made only for a delivery someone waits on.
    """

    __slots__ = ("_event", "done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: str | None = None
        self._event: threading.Event | None = None

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        self._settle(err)

    def _settle(self, err: KafkaError | None) -> None:
        self.error = None if err is None else err.str()
        # done before the event is read; a waiter sets the event before it reads done: one
        # of the two always sees the other's write, so no wake-up is lost
        self.done = True
        event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None) -> bool:
        """Block until the delivery report came (True) or ``timeout`` seconds passed (False).
        Someone must serve the producer's callbacks meanwhile (see :mod:`.poller`)."""
        if self.done:
            return True
        event = self._event
        if event is None:
            with _EVENT_LOCK:  # two waiters on one delivery share one event
                event = self._event
                if event is None:
                    event = self._event = threading.Event()
        return self.done or event.wait(timeout)


_EVENT_LOCK = threading.Lock()


class Acks:
    """The errors of every acknowledgement it was the delivery callback of."""

    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, err: KafkaError | None, _msg: Message) -> None:
        if err is not None:
            self.failed.append(err.str())


def produce_with_room(
    producer: Any,
    topic: str,
    value: bytes | None,
    *,
    key: str | bytes | None,
    headers: Headers | None = None,
    on_delivery: OnDelivery | None = None,
    partition: int | None = None,
    wait: float = 0.05,
    poll: bool = True,
) -> None:
    """``producer.produce(...)``, polling ``wait`` seconds at a time while its queue is full.

    ``poll=False`` is for a thread that must not serve the producer's callbacks (they belong
    to another thread, which polls): it sleeps ``wait`` seconds at a time instead.
    """
    kwargs: dict[str, Any] = {} if partition is None else {"partition": partition}
    while True:
        try:
            producer.produce(
                topic, value=value, key=key, headers=headers, on_delivery=on_delivery, **kwargs
            )
            return
        except BufferError:
            if poll:
                producer.poll(wait)
            else:
                time.sleep(wait)
