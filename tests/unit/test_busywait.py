"""BusyWaitWatch: a warning from the output producer's statistics when it busy-waits."""

from __future__ import annotations

import json
from typing import Any

from streamtasks.worker.busywait import MIN_WAKEUPS, WARN_EVERY_S, BusyWaitWatch


def _report(wakeups: int, produces: int, rtt_us: int = 6000) -> str:
    """A librdkafka statistics report with one real broker and the bootstrap pseudo-broker."""
    return json.dumps(
        {
            "name": "rdkafka#producer-1",
            "type": "producer",
            "brokers": {
                "127.0.0.1:9092/1": {
                    "nodeid": 1,
                    "wakeups": wakeups,
                    "req": {"Produce": produces, "Metadata": 2},
                    "rtt": {"avg": rtt_us, "cnt": 10},
                },
                "GroupCoordinator": {"nodeid": -1, "wakeups": 10**9, "req": {}, "rtt": {"cnt": 0}},
            },
        }
    )


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def _watch() -> tuple[BusyWaitWatch, list[tuple[str, dict[str, Any]]], Clock]:
    warned: list[tuple[str, dict[str, Any]]] = []
    clock = Clock()
    watch = BusyWaitWatch(5, warn=lambda msg, **kw: warned.append((msg, kw)), clock=clock)
    return watch, warned, clock


def test_a_producer_that_wakes_thousands_of_times_a_request_is_reported_with_the_remedy() -> None:
    watch, warned, _ = _watch()
    watch.on_stats(_report(1_000, 10))
    watch.on_stats(_report(1_000 + 1_650_000, 10 + 229))  # the measured slow mode
    assert len(warned) == 1
    message, fields = warned[0]
    assert "linger.ms" in message and "busy-waiting" in message
    assert fields["wakeups"] == 1_650_000 and fields["produce_requests"] == 229
    assert fields["ack_rtt_ms"] == 6.0 and fields["linger_ms"] == 5


def test_a_healthy_or_idle_producer_is_not_reported() -> None:
    watch, warned, _ = _watch()
    watch.on_stats(_report(0, 0))
    watch.on_stats(_report(3_000, 1_000))  # a few wake-ups a request: normal
    watch.on_stats(_report(3_000 + MIN_WAKEUPS - 1, 1_000))  # many per request, but few
    watch.on_stats(_report(3_000 + MIN_WAKEUPS - 1, 1_000))  # idle
    assert warned == [] and watch.reports == 4


def test_the_first_report_counts_from_the_start_and_a_garbled_one_is_ignored() -> None:
    watch, warned, _ = _watch()
    watch.on_stats("{not json")
    watch.on_stats(json.dumps({"brokers": []}))
    assert warned == []
    watch.on_stats(_report(1_300_000, 700))  # a worker that spins from its first interval
    assert len(warned) == 1 and warned[0][1]["wakeups"] == 1_300_000


def test_the_warning_repeats_only_after_a_quiet_spell() -> None:
    watch, warned, clock = _watch()
    total = 0
    for _ in range(5):
        total += 1_000_000
        watch.on_stats(_report(total, total // 5000))
        clock.now += 15
    assert len(warned) == 1
    clock.now += WARN_EVERY_S
    watch.on_stats(_report(total + 1_000_000, total // 5000 + 200))
    assert len(warned) == 2 and watch.warnings == 2
