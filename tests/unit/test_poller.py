"""Waiting for an acknowledgement: woken by whichever thread serves the callback (no broker)."""

from __future__ import annotations

import threading
import time
from typing import Any

from streamtasks import App
from streamtasks.asyncresult import AsyncResult
from streamtasks.kafka.delivery import Delivery
from streamtasks.kafka.poller import Poller


class _SlowPollProducer:
    """``poll(t)`` returns after ``t`` seconds unless it serves an event queued for it, like
    librdkafka's: a callback served by another thread never wakes it."""

    def __init__(self) -> None:
        self.polls = 0
        self.raise_next = False
        self._queued: list[Any] = []
        self._cond = threading.Condition()

    def queue(self, callback: Any) -> None:
        with self._cond:
            self._queued.append(callback)
            self._cond.notify_all()

    def poll(self, timeout: float) -> int:
        self.polls += 1
        if self.raise_next:
            self.raise_next = False
            raise RuntimeError("a user's on_delivery raised")
        with self._cond:
            self._cond.wait_for(lambda: self._queued, timeout)
            served, self._queued = self._queued, []
        for callback in served:
            callback(None, None)
        return len(served)

    def flush(self, timeout: float = 0) -> int:
        return 0

    def __len__(self) -> int:
        return 0


def _app_with(producer: _SlowPollProducer) -> App:
    app = App("app", bootstrap_servers="127.0.0.1:1")
    app._producer = producer  # type: ignore[assignment]
    return app


def test_a_waiter_wakes_at_once_when_another_thread_serves_its_acknowledgement() -> None:
    # Given a sent task whose acknowledgement is not in yet, and a waiter in wait_sent()
    producer = _SlowPollProducer()
    app = _app_with(producer)
    delivery = Delivery()
    handle = AsyncResult("t1", app=app, delivery=delivery)
    took: list[float] = []

    def wait() -> None:
        started = time.monotonic()
        handle.wait_sent(timeout=10)
        took.append(time.monotonic() - started)

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.05)
    # When another thread (a flush elsewhere, an early send) serves its callback
    delivery.on_delivery(None, None)  # type: ignore[arg-type]
    waiter.join(5)
    # Then the waiter returns at once, not after a poll timeout it was sleeping in
    # (before the poller it slept out producer.poll(1.0): took ~1.0 s)
    assert took and took[0] < 0.5, took
    app.close()


def test_the_poller_serves_a_waiters_callback_and_stops_on_close() -> None:
    # Given a record whose delivery report is queued on the producer, served by nobody else
    producer = _SlowPollProducer()
    app = _app_with(producer)
    delivery = Delivery()
    producer.queue(delivery.on_delivery)
    # When a thread waits for it
    assert app.wait_delivered(delivery, timeout=5)
    # Then the poller served it; and after close the poller no longer polls the producer
    assert delivery.done and delivery.error is None
    app.close()
    polls = producer.polls
    time.sleep(0.3)
    assert producer.polls == polls


def test_a_wait_times_out_and_two_waiters_on_one_delivery_both_wake() -> None:
    producer = _SlowPollProducer()
    app = _app_with(producer)
    delivery = Delivery()
    started = time.monotonic()
    assert not app.wait_delivered(delivery, timeout=0.2)
    assert 0.2 <= time.monotonic() - started < 2
    woke: list[bool] = []
    threads = [
        threading.Thread(target=lambda: woke.append(app.wait_delivered(delivery, timeout=10)))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    time.sleep(0.1)
    delivery.on_delivery(None, None)  # type: ignore[arg-type]
    for t in threads:
        t.join(5)
    assert woke == [True, True]
    app.close()


def test_a_raising_callback_does_not_end_the_poller() -> None:
    # Given a poller whose next poll raises (a user's on_delivery raised inside it)
    producer = _SlowPollProducer()
    producer.raise_next = True
    poller = Poller(producer)
    with poller.waiting():
        # Then it goes on serving callbacks
        delivery = Delivery()
        producer.queue(delivery.on_delivery)
        assert delivery.wait(5)
        assert poller.running
    poller.stop()
    assert not poller.running


def _wait_until(predicate: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


def test_the_poller_ends_when_nobody_waits_and_starts_again_for_the_next_waiter() -> None:
    # Given a poller that served one waiter
    producer = _SlowPollProducer()
    poller = Poller(producer, idle_exit=0.2)
    delivery = Delivery()
    producer.queue(delivery.on_delivery)
    with poller.waiting():
        assert delivery.wait(5)
    # When nobody waits for longer than idle_exit
    # Then the thread ends and polls no more (a sender that only sends pays for no thread)
    assert _wait_until(lambda: not poller.running, 5), "the idle poller kept running"
    polls = producer.polls
    time.sleep(0.3)
    assert producer.polls == polls
    # And the next waiter gets a new thread that serves its callback
    second = Delivery()
    producer.queue(second.on_delivery)
    with poller.waiting():
        assert second.wait(5)
    assert poller.starts == 2
    poller.stop()


def test_the_poller_keeps_running_while_a_waiter_waits_longer_than_idle_exit() -> None:
    producer = _SlowPollProducer()
    poller = Poller(producer, idle_exit=0.1)
    delivery = Delivery()
    with poller.waiting():
        time.sleep(0.5)  # the waiter waits five idle_exits: the thread must not end under it
        assert poller.running and poller.starts == 1
        producer.queue(delivery.on_delivery)
        assert delivery.wait(5)
    poller.stop()


def test_many_waiters_coming_and_going_always_have_a_poller() -> None:
    # Waiters that come while the thread decides to end must not be left without one
    producer = _SlowPollProducer()
    poller = Poller(producer, idle_exit=0.0)
    failures: list[int] = []

    def waiter(i: int) -> None:
        for _ in range(20):
            d = Delivery()
            with poller.waiting():
                producer.queue(d.on_delivery)
                if not d.wait(5):
                    failures.append(i)
            time.sleep(0.001 * (i % 3))

    threads = [threading.Thread(target=waiter, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    poller.stop()
    assert failures == []
