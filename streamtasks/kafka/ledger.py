"""The sender's ledger: which produced records the broker has not acknowledged (yet, or ever).

:class:`Ledger` numbers each record an :class:`~streamtasks.app.App` produces, under a label
(``"task <id>"`` or a topic), and keeps it until its delivery report; a report with an error
moves the label to the failures that the next ``flush()`` reports. :func:`produce_batch` hands
many records to the producer back to back on one ledger entry per record.

Invariants: every record entered is either still pending, acknowledged (gone), or failed
(reported once); nothing leaves the ledger without its delivery report, except a record the
producer refused outright (the produce call raised, so the caller was told).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streamtasks.kafka.delivery import Delivery, produce_with_room

if TYPE_CHECKING:
    from confluent_kafka import KafkaError, Message

    from streamtasks.wire.topics import Headers

__all__ = ["Ledger", "Outgoing", "produce_batch"]

#: one record of a batch: ``(topic, value, key, headers, label)``
Outgoing = tuple[str, bytes, "str | bytes", "Headers", str]


class Ledger:
    """Pending and failed records of one sender; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._unacked: OrderedDict[int, str] = OrderedDict()
        self._failed: list[tuple[str, str]] = []
        self._seq = 0

    def enter(self, labels: Sequence[str]) -> int:
        """Enter records under ``labels``; returns the number of the first (the rest follow)."""
        with self._lock:
            first = self._seq + 1
            self._seq += len(labels)
            for n, label in enumerate(labels):
                self._unacked[first + n] = label
            return first

    def report(self, seq: int, err: KafkaError | None) -> None:
        """The delivery report of record ``seq``."""
        with self._lock:
            label = self._unacked.pop(seq, f"record {seq}")
            if err is not None:
                self._failed.append((label, err.str()))

    def withdraw(self, seqs: range) -> None:
        """Records the producer refused (the caller saw the error): forget them."""
        with self._lock:
            for seq in seqs:
                self._unacked.pop(seq, None)

    def take_failed(self) -> list[tuple[str, str]]:
        """``(label, error)`` of records that failed since the last call."""
        with self._lock:
            failed, self._failed = self._failed, []
            return failed

    def forget_failure(self, label: str) -> None:
        """The caller was told of ``label``'s failure: do not report it again."""
        with self._lock:
            self._failed = [(what, err) for what, err in self._failed if what != label]

    def pending(self) -> list[str]:
        with self._lock:
            return list(self._unacked.values())

    def clear(self) -> None:
        with self._lock:
            self._unacked.clear()


class _Entry(Delivery):
    """One record of :func:`produce_batch`: its acknowledgement and its delivery callback,
    which also settles the record's ledger entry (one object per record, not two)."""

    __slots__ = ("_ledger", "_seq")

    def __init__(self, ledger: Ledger, seq: int) -> None:
        super().__init__()
        self._ledger = ledger
        self._seq = seq

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self._ledger.report(self._seq, err)
        self._settle(err)


def produce_batch(producer: Any, ledger: Ledger, records: Sequence[Outgoing]) -> list[Delivery]:
    """Produce ``records`` back to back (waiting for room when the local queue is full), each
    entered in ``ledger``; one :class:`Delivery` per record, in order. If the producer refuses
    one, the call raises and that record and the ones after it were not produced."""
    if not records:
        return []
    first = ledger.enter([rec[4] for rec in records])
    deliveries: list[Delivery] = [_Entry(ledger, first + n) for n in range(len(records))]
    produce = producer.produce
    n = 0
    try:
        for n, (topic, value, key, headers, _label) in enumerate(records):
            callback = deliveries[n].on_delivery
            try:
                produce(topic, value=value, key=key, headers=headers, on_delivery=callback)
            except BufferError:
                produce_with_room(
                    producer, topic, value, key=key, headers=headers, on_delivery=callback
                )
    except BaseException:
        ledger.withdraw(range(first + n, first + len(records)))
        raise
    producer.poll(0)
    return deliveries
