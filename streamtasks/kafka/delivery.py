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
    """The broker's acknowledgement of one produced record (set from a delivery callback)."""

    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = False
        self.error: str | None = None

    def on_delivery(self, err: KafkaError | None, _msg: Message) -> None:
        self.error = None if err is None else err.str()
        self.done = True


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
