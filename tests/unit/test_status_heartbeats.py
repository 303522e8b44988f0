"""Status from heartbeats the caller already follows (the dashboard): no second read of
``{ns}.events``, and the same workers and rates as from the topic."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from streamtasks import App
from streamtasks.dashboard.aggregates import Aggregates
from streamtasks.kafka import clients, reader
from streamtasks.kafka.clients import GroupInfo
from streamtasks.ops import status
from streamtasks.ops.events import queue_rates
from streamtasks.wire.events import WorkerHeartbeat
from tests.unit.test_events import NOW
from tests.unit.test_events import _hb as heartbeat


def _hb(worker: str, at: int, done: int) -> WorkerHeartbeat:
    return heartbeat(worker, at, queue_counters={"default": {"succeeded": done, "failed": 0}})


class _Closable:
    def close(self) -> None:
        pass


@pytest.fixture
def offline_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Given a broker stand-in with an empty group and no events topic to read."""
    monkeypatch.setattr(clients, "make_admin", lambda conf: object())
    monkeypatch.setattr(clients, "check_reachable", lambda *a, **kw: None)
    monkeypatch.setattr(status, "describe_group", lambda admin, g: GroupInfo(g, "EMPTY", []))
    monkeypatch.setattr(reader, "open_reader", lambda app: _Closable())
    monkeypatch.setattr(status, "now_ms", lambda: NOW)

    def no_read(*args: Any, **kwargs: Any) -> list[WorkerHeartbeat]:
        raise AssertionError("collect(heartbeats=...) read the events topic")

    monkeypatch.setattr(status, "recent_heartbeats", no_read)


@pytest.mark.usefixtures("offline_broker")
def test_collect_uses_the_heartbeats_passed_in_instead_of_reading_events() -> None:
    beats = [
        _hb("a", NOW - 400_000, 0),  # older than the workers' lookback: not listed
        _hb("b", NOW - 50_000, 100),
        _hb("b", NOW - 10_000, 500),
    ]
    report = status.collect(App("t", bootstrap_servers="localhost:1"), [], heartbeats=beats)
    assert [w.heartbeat.worker_id for w in report.workers] == ["b"]
    assert report.workers[0].heartbeat.timestamp == NOW - 10_000
    assert report.rates["default"].finished == pytest.approx(400 / 40)


def test_the_dashboard_keeps_the_heartbeats_the_rates_need_and_no_more() -> None:
    # Given heartbeats of two workers every 5 s for ten minutes, one arriving out of order
    agg = Aggregates()
    every = [_hb(w, NOW - 600_000 + i * 5000, i * 10) for i in range(121) for w in ("a", "b")]
    for hb in every:
        agg.record_heartbeat(hb.worker_id, hb)
    agg.record_heartbeat("a", dataclasses.replace(every[0], timestamp=NOW - 1))
    # Then it holds each worker's last minute, its latest heartbeat first among them
    kept = agg.window_heartbeats()
    assert len(kept) == 2 * 13
    assert {hb.timestamp for hb in agg.heartbeats()} == {NOW}
    # and the rates from them are those from every heartbeat on the topic
    assert queue_rates(kept, NOW) == queue_rates(every, NOW)
