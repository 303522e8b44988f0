"""The events contract: frames of task events and heartbeats, and who counts as online."""

from __future__ import annotations

import dataclasses

import pytest

from streamtasks.errors import DecodeError
from streamtasks.ops.events import is_online, latest_heartbeats, queue_rates, worker_views
from streamtasks.wire.envelope import ErrorInfo
from streamtasks.wire.events import (
    KIND_HEARTBEAT,
    KIND_TASK,
    EventDecodeError,
    TaskEvent,
    TaskEventType,
    WorkerHeartbeat,
    WorkerState,
    decode_event,
    encode_heartbeat,
    encode_task_event,
    event_headers,
    event_key,
    kind_of,
)

NOW = 1_796_000_000_000


def _hb(worker: str = "w1", at: int = NOW, **kw: object) -> WorkerHeartbeat:
    fields: dict[str, object] = {
        "worker_id": worker,
        "host": "h",
        "pid": 42,
        "group_id": "g",
        "queues": ("default",),
        "concurrency": 4,
        "in_flight": 1,
        "started_at": NOW - 600_000,
        "interval_ms": 5000,
        "timestamp": at,
    }
    fields.update(kw)
    return WorkerHeartbeat(**fields)  # type: ignore[arg-type]


def test_a_task_event_round_trips_with_its_headers_and_key() -> None:
    event = TaskEvent(
        "id-1",
        "tasks.add",
        "default",
        TaskEventType.FAILED,
        attempt=2,
        timestamp=NOW,
        worker_id="w1",
        runtime_ms=12.5,
        error=ErrorInfo("ValueError", "bad", "Traceback ..."),
        partition=3,
        offset=99,
    )
    headers = event_headers(event)
    assert kind_of(headers) == KIND_TASK
    assert event_key(event) == b"id-1"
    assert decode_event(encode_task_event(event), headers) == event
    assert decode_event(encode_task_event(event)) == event  # no header: by fingerprint
    assert event.as_dict()["kind"] == "task"
    assert event.as_dict()["type"] == "FAILED"


def test_a_heartbeat_round_trips_with_its_counters() -> None:
    hb = _hb(
        counters={"received": 5, "succeeded": 4},
        queue_counters={"default": {"received": 5, "succeeded": 4}},
        partitions=("ns.tasks.default:0",),
        state=WorkerState.OFFLINE,
        events=True,
    )
    headers = event_headers(hb)
    assert kind_of(dict(headers)) == KIND_HEARTBEAT
    assert event_key(hb) == b"w1"
    assert decode_event(encode_heartbeat(hb), headers) == hb


@pytest.mark.parametrize(
    ("value", "headers"),
    [
        (None, None),
        (b"not avro", None),
        (b"\xc3\x01" + b"\x00" * 8 + b"x", None),  # unknown fingerprint
        (encode_task_event(TaskEvent("i", "t", "q", TaskEventType.SENT)), [("st-kind", b"hb")]),
        (encode_task_event(TaskEvent("i", "t", "q", TaskEventType.SENT))[:-3], None),
        # a heartbeat frame under a task kind
        (encode_heartbeat(_hb()), [("st-kind", b"task")]),
    ],
)
def test_an_undecodable_record_is_one_clear_error(
    value: bytes | None, headers: list[tuple[str, bytes]] | None
) -> None:
    with pytest.raises(EventDecodeError) as caught:
        decode_event(value, headers)
    assert isinstance(caught.value, DecodeError)
    assert caught.value.raw == value


def test_online_means_online_and_at_most_three_intervals_old() -> None:
    assert is_online(_hb(at=NOW - 15_000), NOW)
    assert not is_online(_hb(at=NOW - 15_001), NOW)
    assert not is_online(_hb(at=NOW, state=WorkerState.OFFLINE), NOW)
    assert is_online(_hb(at=NOW - 2_500, interval_ms=1000), NOW)
    assert not is_online(_hb(at=NOW - 3_500, interval_ms=1000), NOW)


def test_the_latest_heartbeat_per_worker_decides() -> None:
    beats = [
        _hb("a", NOW - 4000),
        _hb("b", NOW - 60_000),
        _hb("a", NOW - 1000, state=WorkerState.OFFLINE),
        _hb("a", NOW - 2000),  # read after a later one: not the latest
    ]
    latest = latest_heartbeats(beats)
    assert latest["a"].timestamp == NOW - 1000
    views = worker_views(beats, NOW)
    assert [(v.heartbeat.worker_id, v.online) for v in views] == [("a", False), ("b", False)]
    assert views[0].age_seconds == 1.0
    assert views[1].as_dict()["last_heartbeat_age"] == 60.0
    fresh = worker_views([_hb("c", NOW - 100), *beats], NOW)
    assert [v.heartbeat.worker_id for v in fresh if v.online] == ["c"]


def test_rates_per_queue_from_counter_deltas_over_the_window() -> None:
    def counts(done: int, failed: int) -> dict[str, dict[str, int]]:
        return {"default": {"succeeded": done, "failed": failed, "retried": 7}}

    beats = [
        _hb("a", NOW - 90_000, queue_counters=counts(0, 0)),  # before the window: ignored
        _hb("a", NOW - 50_000, queue_counters=counts(100, 10)),
        _hb("a", NOW - 10_000, queue_counters=counts(500, 50)),
        # b started inside the window: its counters count from zero at started_at
        _hb("b", NOW - 5_000, started_at=NOW - 25_000, queue_counters=counts(200, 0)),
    ]
    rates = queue_rates(beats, NOW, window_s=60)
    # a: (400 + 40) / 40 s finished, 40 / 40 s failed; b: 200 / 20 s finished
    assert rates["default"].finished == pytest.approx(11 + 10)
    assert rates["default"].failed == pytest.approx(1)
    restarted = dataclasses.replace(beats[2], queue_counters=counts(1, 0))
    assert queue_rates([beats[1], restarted], NOW)["default"].finished == 0
