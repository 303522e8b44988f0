"""A warning when the worker's output producer busy-waits for acknowledgements.

librdkafka's idempotent producer (streamtasks requires one) keeps one ProduceRequest in flight
per partition. When a partition's next batch is ready, its ``linger.ms`` passed, before the
previous batch is acknowledged, the producer's broker thread polls with a zero timeout until
the acknowledgement comes. It does not sleep, and the CPU it burns is taken from the tasks
and, on a shared machine, from the broker, whose acknowledgements then come later still.
Against a loaded Apache Kafka a worker's output producer was measured at 1.6 million
wake-ups for 230 requests at 5 ms (bench/README.md, "issue 18, eighth session"). The remedy
is a worker ``linger.ms`` above the broker's ack round trip.

:class:`BusyWaitWatch` reads the producer's statistics (every :data:`STATS_INTERVAL_MS`). It
logs a warning with the measured figures and the remedy when, over one interval, the broker
threads woke :data:`WAKEUPS_PER_REQUEST` times or more per ProduceRequest, and at least
:data:`MIN_WAKEUPS` times in all. Then it stays quiet for :data:`WARN_EVERY_S`. An idle
thread wakes a few times per request.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import structlog

__all__ = [
    "MIN_WAKEUPS",
    "STATS_INTERVAL_MS",
    "WAKEUPS_PER_REQUEST",
    "WARN_EVERY_S",
    "BusyWaitWatch",
]

log = structlog.get_logger("streamtasks.worker")

#: how often the output producer reports its statistics
STATS_INTERVAL_MS = 15_000
#: wake-ups per ProduceRequest from which the broker threads count as busy-waiting
WAKEUPS_PER_REQUEST = 200
#: ... and the least wake-ups in one interval (a few requests alone prove nothing)
MIN_WAKEUPS = 50_000
#: seconds between two warnings
WARN_EVERY_S = 600.0


def _totals(report: dict[str, Any]) -> tuple[int, int, float]:
    """Wake-ups and ProduceRequests of the real brokers' threads, and the worst average ack
    round trip in ms, from one statistics report."""
    brokers = [b for b in report.get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
    wakeups = sum(int(b.get("wakeups", 0)) for b in brokers)
    produces = sum(int(b.get("req", {}).get("Produce", 0)) for b in brokers)
    rtts = [b["rtt"]["avg"] / 1000 for b in brokers if b.get("rtt", {}).get("cnt")]
    return wakeups, produces, max(rtts, default=0.0)


class BusyWaitWatch:
    def __init__(
        self,
        linger_ms: float,
        *,
        warn: Callable[..., Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._linger_ms = linger_ms
        self._warn = warn if warn is not None else log.warning
        self._clock = clock
        #: wake-ups and ProduceRequests in the last report (totals since the start)
        self.totals: tuple[int, int] | None = None
        self._warned_at: float | None = None
        self.reports = 0  # statistics reports read
        self.warnings = 0

    def on_stats(self, raw: str) -> None:
        """The producer's ``stats_cb`` (called from its ``poll()``, on the poll thread)."""
        try:
            wakeups, produces, rtt_ms = _totals(json.loads(raw))
        except (ValueError, TypeError, KeyError, AttributeError):
            return  # a report we cannot read says nothing either way
        self.reports += 1
        # the counters start with the client: the first report covers its first interval
        last, self.totals = self.totals or (0, 0), (wakeups, produces)
        woke, sent = wakeups - last[0], produces - last[1]
        if woke < MIN_WAKEUPS or woke < WAKEUPS_PER_REQUEST * max(sent, 1):
            return
        now = self._clock()
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY_S:
            return
        self._warned_at = now
        self.warnings += 1
        self._warn(
            "the worker's producer is busy-waiting for acknowledgements: its broker threads "
            "woke up many times per request; raise the worker producer's linger.ms above the "
            "broker's ack round trip (worker_producer_config={'linger.ms': ...})",
            wakeups=woke,
            produce_requests=sent,
            ack_rtt_ms=round(rtt_ms, 1),
            linger_ms=self._linger_ms,
            seconds=STATS_INTERVAL_MS / 1000,
        )
