"""The producing half of :class:`~streamtasks.App`: one lazily made producer per app, and a
ledger of what it sent.

Invariants: the producer is made on first use (importing a module that defines an App never
touches the network) and flushed at interpreter exit; every record produced is in the ledger
until the broker acknowledges it, and one it refused is reported once (by :meth:`flush`, or by
the caller that raised it: :meth:`failure_reported`), so nothing is dropped silently.
"""

from __future__ import annotations

import atexit
import threading
import time
from collections.abc import Callable, Sequence

import structlog

from streamtasks.config import Settings
from streamtasks.errors import BrokerError
from streamtasks.kafka import KafkaError, Message, Producer, clients
from streamtasks.kafka.delivery import Delivery, produce_with_room
from streamtasks.kafka.earlysend import EarlySender, linger_seconds
from streamtasks.kafka.ledger import Ledger, Outgoing, produce_batch
from streamtasks.kafka.poller import Poller
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.headers import REVOKED_AT
from streamtasks.wire.topics import Headers, revoked_topic

__all__ = ["Producing"]

log = structlog.get_logger("streamtasks.app")


class Producing:
    """Mixed into :class:`~streamtasks.App`: ``producer``, ``produce``, ``flush``, ``revoke``."""

    settings: Settings

    def _init_producing(self) -> None:
        self._lock = threading.Lock()
        self._producer: Producer | None = None
        self._poller: Poller | None = None
        self._atexit_registered = False
        # Records produced and not yet acknowledged (label: task id or topic), and the ones
        # the broker never acknowledged since the last flush: nothing is dropped silently.
        self._ledger = Ledger()
        # a task sent after a quiet spell leaves at once instead of after linger.ms
        self._early: EarlySender | None = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            with self._lock:
                if self._producer is None:
                    config = self.settings.client_producer()
                    producer = clients.make_producer(config)
                    linger = linger_seconds(config)
                    if linger > 0:
                        self._early = EarlySender(producer, quiet=linger / 2)
                    self._producer = producer
                    if not self._atexit_registered:
                        atexit.register(self._flush_at_exit)
                        self._atexit_registered = True
        return self._producer

    def wait_delivered(self, delivery: Delivery, timeout: float | None = None) -> bool:
        """Block until the broker acknowledged (or refused) ``delivery``; ``False`` if
        ``timeout`` seconds passed first. The producer's callbacks are served meanwhile by a
        poller thread (running while someone waits), so a waiter is woken at once whichever
        thread serves its callback."""
        if delivery.done:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 1.0 if deadline is None else min(deadline - time.monotonic(), 1.0)
            with self._poller_now().waiting():
                if delivery.wait(max(left, 0.0)):
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _poller_now(self) -> Poller:
        """The producer's poller (a new one after :meth:`_stop_threads`)."""
        poller = self._poller
        if poller is None or poller.stopped:
            producer = self.producer  # (takes the lock itself when it makes the producer)
            with self._lock:
                poller = self._poller
                if poller is None:
                    poller = self._poller = Poller(producer)
        return poller

    def _stop_threads(self) -> None:
        """End the poller and the early sender, before the producer is dropped (close) or
        torn down (exit); the next use makes them again."""
        with self._lock:
            poller, self._poller = self._poller, None
            early, self._early = self._early, None
        if poller is not None:
            poller.stop()
        if early is not None:
            early.close()

    def produce(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: str | bytes | None,
        headers: Headers | None = None,
        on_delivery: Callable[[KafkaError | None, Message], None] | None = None,
        label: str | None = None,
    ) -> None:
        """Produce one record, waiting for room when the local queue is full.

        A record the broker does not acknowledge is remembered (see :meth:`flush`)."""
        producer = self.producer
        ledger = self._ledger
        seq = ledger.enter([label or topic])

        def delivered(err: KafkaError | None, msg: Message) -> None:
            ledger.report(seq, err)
            if on_delivery is not None:
                on_delivery(err, msg)

        try:
            produce_with_room(
                producer, topic, value, key=key, headers=headers, on_delivery=delivered
            )
        except BaseException:
            ledger.withdraw(range(seq, seq + 1))
            raise

    def produce_many(self, records: Sequence[Outgoing]) -> list[Delivery]:
        """Produce task records back to back; one :class:`Delivery` per record, in order.
        Tracked like :meth:`produce` (see :func:`~streamtasks.kafka.ledger.produce_batch`).

        Records sent after a quiet spell (nothing sent for half of ``linger.ms``: a sender of
        fewer than 400 tasks a second at the default 5 ms) go out at once, without waiting
        out the linger for company that seldom comes (:class:`~streamtasks.kafka.earlysend.
        EarlySender`); back-to-back sends keep batching."""
        if not records:
            return []
        deliveries = produce_batch(self.producer, self._ledger, records)
        early = self._early
        if early is not None:
            early.sent()
        return deliveries

    def revoke(self, task_id: str, *, timeout: float = 30.0) -> None:
        """Mark ``task_id`` so no worker starts it (persistently); it ends REVOKED. A task
        that already started is not interrupted."""
        self.produce(
            revoked_topic(self.settings.namespace),
            str(now_ms()).encode(),
            key=task_id,
            headers=[(REVOKED_AT, str(now_ms()).encode())],
        )
        if self.flush(timeout):
            raise BrokerError(f"the revoke of {task_id} was not acknowledged within {timeout}s")

    def flush(self, timeout: float = 30.0) -> int:
        """Wait until every produced record is acknowledged; returns how many were not: still
        queued after ``timeout``, or refused/timed out since the last flush (those are logged
        as an error with their task ids). ``0`` means everything sent was enqueued."""
        if self._producer is None:
            return 0
        remaining: int = self._producer.flush(timeout)
        failed = self._ledger.take_failed()
        if failed:
            log.error(
                "not delivered: the broker did not acknowledge these records",
                count=len(failed),
                records=[what for what, _ in failed],
                error=failed[-1][1],
            )
        return remaining + len(failed)

    def failure_reported(self, label: str) -> None:
        """The caller was told (a raised DeliveryError): flush/close need not report it again."""
        self._ledger.forget_failure(label)

    def undelivered(self) -> list[str]:
        """Labels (``"task <id>"`` or a topic) of records not acknowledged yet."""
        return self._ledger.pending()

    def _flush_at_exit(self, timeout: float = 10.0) -> int:
        if self._producer is None:
            return 0
        failed = self.flush(timeout)
        self._stop_threads()
        lost = self.undelivered()
        if lost:
            log.error(
                "exiting with records not delivered: they were NOT enqueued",
                count=len(lost),
                records=lost,
            )
        return failed
