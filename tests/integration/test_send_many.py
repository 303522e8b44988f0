"""Bulk sending and connecting ahead of the first send, on a real broker."""

from __future__ import annotations

import threading
import time

import pytest

from streamtasks import App
from streamtasks.testing import consume_all
from tests.integration.conftest import run_burst_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_send_many_enqueues_every_item_and_every_handle_resolves(
    app: App, kafka_bootstrap: str, ns: str
) -> None:
    # Given a connected app
    app.connect(timeout=15)
    add = app.tasks["add"]
    # When 300 tasks are sent in one batch, as tuples and as dicts
    items: list[tuple[int, int] | dict[str, int]] = [
        (i, 1) if i % 2 else {"x": i, "y": 1} for i in range(300)
    ]
    handles = add.send_many(items)
    # Then every one is acknowledged by the broker ...
    assert app.flush(30) == 0
    for h in handles:
        h.wait_delivery(10)
    # ... and, once a worker ran them, each handle returns its own item's value
    run_burst_worker(kafka_bootstrap, ns)
    assert [h.get(timeout=30) for h in handles] == [i + 1 for i in range(300)]


def test_send_many_with_one_key_puts_the_batch_in_one_partition_in_order(
    app: App, kafka_bootstrap: str
) -> None:
    add = app.tasks["add"]
    handles = add.send_many([(i, 0) for i in range(50)], key="one-customer")
    assert app.flush(30) == 0
    records = consume_all(kafka_bootstrap, add.topic, expect=50, timeout=30)
    assert len({r.partition() for r in records}) == 1
    ids = [dict(r.headers() or [])["st-id"].decode() for r in records]
    assert ids == [h.id for h in handles]


def test_a_wait_for_the_ack_is_not_stalled_by_another_thread_serving_it(app: App) -> None:
    # Given a connected app and another thread that flushes the producer right after each
    # send (as a service's own flush loop would): it serves the delivery callbacks too
    app.connect(timeout=15)
    add = app.tasks["add"]
    kick, stop = threading.Event(), threading.Event()

    def flusher() -> None:
        while not stop.is_set():
            if kick.wait(0.1):
                kick.clear()
                app.producer.flush(0.001)

    helper = threading.Thread(target=flusher, daemon=True)
    helper.start()
    # When 200 lone tasks are sent and each one's acknowledgement is awaited
    took = []
    try:
        for i in range(200):
            started = time.monotonic()
            handle = add.send(i, 0)
            kick.set()
            handle.wait_sent(timeout=10)
            took.append(time.monotonic() - started)
            time.sleep(0.02)
    finally:
        stop.set()
        helper.join(5)
    # Then no wait slept out a poll timeout because the other thread took its callback
    # (before the producer's poller: a waiter in producer.poll(1.0) slept ~1.0 s, ~1 in 40)
    stalled = sorted(t for t in took if t > 0.95)
    assert not stalled, f"{len(stalled)} of 200 waits took {stalled}"


def test_a_lone_send_leaves_at_once_instead_of_waiting_out_a_long_linger(
    kafka_bootstrap: str, ns: str
) -> None:
    # Given a client whose producer lingers 4 s for company
    lone = App(
        "lone",
        namespace=ns,
        bootstrap_servers=kafka_bootstrap,
        partitions=1,
        client_producer_config={"linger.ms": 4000},
    )

    @lone.task
    def ping(n: int) -> int:
        return n

    lone.apply_topics()
    try:
        lone.connect(timeout=15)
        # When one task is sent after a quiet spell
        started = time.monotonic()
        handle = ping.send(1)
        # Then the broker has it long before the linger ran out: the early sender flushed it
        handle.wait_delivery(3.0)
        assert time.monotonic() - started < 3.0
    finally:
        lone.close()
