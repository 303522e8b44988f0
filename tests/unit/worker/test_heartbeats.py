"""The heartbeat sender: a beat every interval, one at once when the assignment changes, and
OFFLINE on stop (a fake producer: no broker)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from streamtasks import App
from streamtasks.kafka import clients
from streamtasks.wire.events import WorkerHeartbeat, WorkerState, decode_event
from streamtasks.worker.heartbeats import HeartbeatCounters, HeartbeatSender

NS = "hb"


class FakeProducer:
    def __init__(self) -> None:
        self.beats: list[WorkerHeartbeat] = []
        self.sent = threading.Condition()

    def produce(self, _topic: str, value: bytes, **kw: Any) -> None:
        beat = decode_event(value, kw["headers"])
        assert isinstance(beat, WorkerHeartbeat)
        with self.sent:
            self.beats.append(beat)
            self.sent.notify_all()

    def poll(self, _timeout: float) -> int:
        return 0

    def flush(self, _timeout: float) -> int:
        return 0

    def wait_for(self, n: int, timeout: float = 5.0) -> list[WorkerHeartbeat]:
        with self.sent:
            assert self.sent.wait_for(lambda: len(self.beats) >= n, timeout), self.beats
            return list(self.beats)


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    fake = FakeProducer()
    monkeypatch.setattr(clients, "make_producer", lambda _cfg: fake)
    return fake


def _sender(counters: HeartbeatCounters, interval: float) -> HeartbeatSender:
    app = App("hb", namespace=NS, bootstrap_servers="127.0.0.1:1")
    return HeartbeatSender(
        app,
        counters,
        worker_id="w1",
        group_id="g",
        queues=["default"],
        concurrency=2,
        interval=interval,
        events=False,
    )


@pytest.mark.timeout(30)
def test_a_new_assignment_is_reported_at_once_not_a_beat_later(producer: FakeProducer) -> None:
    # Given a worker whose first beat went out before it had partitions (interval: a minute)
    counters = HeartbeatCounters(NS, ["default"])
    sender = _sender(counters, interval=60.0).start()
    try:
        (first,) = producer.wait_for(1)
        assert first.partitions == ()
        # When the group assigns it partitions
        counters.on_assigned([(f"{NS}.tasks.default", 0), (f"{NS}.tasks.default", 1)])
        # Then a beat with them follows at once
        second = producer.wait_for(2)[1]
        assert second.state == WorkerState.ONLINE
        assert second.partitions == (f"{NS}.tasks.default:0", f"{NS}.tasks.default:1")
        # and a revocation too
        counters.on_revoked([(f"{NS}.tasks.default", 0)], lost=False)
        assert producer.wait_for(3)[2].partitions == (f"{NS}.tasks.default:1",)
    finally:
        sender.stop(timeout=5)
    # and stop sends OFFLINE last, without waiting out the interval
    assert producer.beats[-1].state == WorkerState.OFFLINE
    assert len(producer.beats) == 4


@pytest.mark.timeout(30)
def test_beats_follow_the_interval_without_changes(producer: FakeProducer) -> None:
    counters = HeartbeatCounters(NS, ["default"])
    sender = _sender(counters, interval=0.05).start()
    try:
        beats = producer.wait_for(4)
    finally:
        sender.stop(timeout=5)
    assert all(b.state == WorkerState.ONLINE for b in beats[:4])
