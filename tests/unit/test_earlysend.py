"""EarlySender: a send after a quiet spell is flushed at once, on a thread of its own."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from streamtasks.kafka.earlysend import EarlySender, linger_seconds

pytestmark = pytest.mark.timeout(20)


class FakeProducer:
    """Records each flush (its timeout and thread); a flush blocks until ``release`` is set."""

    def __init__(self) -> None:
        self.flushes: list[tuple[float, str]] = []
        self.flushed = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def flush(self, timeout: float) -> int:
        self.flushes.append((timeout, threading.current_thread().name))
        self.flushed.set()
        self.release.wait(5)
        return 0


def wait_for(cond: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.001)


def test_a_send_after_a_quiet_spell_is_flushed_on_another_thread_without_blocking() -> None:
    producer = FakeProducer()
    producer.release.clear()  # the flush hangs: the sender must not wait for it
    early = EarlySender(producer, quiet=0.05, wait=0.001)
    try:
        started = time.monotonic()
        early.sent()
        assert time.monotonic() - started < 0.05
        assert producer.flushed.wait(5)
        assert producer.flushes == [(0.001, "streamtasks-early-send")]
    finally:
        producer.release.set()
        early.close()


def test_back_to_back_sends_keep_batching_and_the_next_quiet_send_flushes_again() -> None:
    producer = FakeProducer()
    early = EarlySender(producer, quiet=0.2)
    try:
        early.sent()  # the first send ever comes after a quiet spell
        wait_for(lambda: early.flushes == 1)
        for _ in range(200):  # a burst: never quiet, so no flush
            early.sent()
        time.sleep(0.05)
        assert early.flushes == 1
        time.sleep(0.25)  # quiet for longer than 0.2 s
        early.sent()
        wait_for(lambda: early.flushes == 2)
        assert len(producer.flushes) == 2
    finally:
        early.close()


def test_close_ends_the_thread() -> None:
    early = EarlySender(FakeProducer(), quiet=0.01)
    early.close()
    assert not early._thread.is_alive()
    early.sent()  # harmless after close


@pytest.mark.parametrize(
    ("config", "seconds"),
    [
        ({}, 0.005),
        ({"linger.ms": 0}, 0.0),
        ({"linger.ms": "20"}, 0.02),
        ({"queue.buffering.max.ms": 2}, 0.002),
        ({"linger.ms": "nonsense"}, 0.005),
    ],
)
def test_linger_seconds_reads_the_producer_config(
    config: dict[str, object], seconds: float
) -> None:
    assert linger_seconds(config) == pytest.approx(seconds)
