"""What a worker says about its own health: the broker gone and back, partitions that stall.

Both watches run on the poll thread and only log; neither changes what the worker does.

* :class:`BrokerWatch` says once that the broker went away (librdkafka's connection failures,
  collected by :mod:`streamtasks.logs`) and, probing for metadata every second meanwhile,
  once when it answers again, with how long it was down;
* :class:`StallWatch` says when a partition's oldest unfinished offset has not moved for
  ``stall_warning`` seconds — once per such period — with the partition, the offset and why.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import structlog
from confluent_kafka import Consumer, KafkaException

from streamtasks import logs
from streamtasks.worker.tracker import OffsetTracker

__all__ = ["BrokerWatch", "StallWatch"]

log = structlog.get_logger("streamtasks.worker")

TP = tuple[str, int]


class BrokerWatch:
    """Logs the broker going away and coming back; :meth:`tick` every poll-loop turn."""

    def __init__(self, bootstrap_servers: str | None) -> None:
        self._bootstrap_servers = bootstrap_servers
        self._down_since: float | None = None  # monotonic time it was found down
        self._probe_at = 0.0

    def tick(self, consumer: Consumer) -> None:
        if time.monotonic() - self._probe_at >= 1.0:
            self._probe(consumer)

    def _probe(self, consumer: Consumer) -> None:
        now = self._probe_at = time.monotonic()
        if self._down_since is None:
            down = logs.unreachable_brokers()
            if down:
                self._down_since = now
                log.warning(
                    "broker unreachable; waiting for it to come back",
                    brokers=down,
                    bootstrap_servers=self._bootstrap_servers,
                )
            return
        try:
            if not consumer.list_topics(timeout=0.5).brokers:
                return
        except KafkaException:
            return
        logs.brokers_reachable_again()
        log.info(
            "broker reachable again",
            bootstrap_servers=self._bootstrap_servers,
            down_seconds=round(now - self._down_since, 1),
        )
        self._down_since = None


class StallWatch:
    """Logs partitions whose oldest unfinished offset does not move for ``stall_warning`` s."""

    def __init__(self, stall_warning: float, worker_id: str) -> None:
        self.stall_warning = stall_warning
        self._worker_id = worker_id
        self._progress: dict[TP, tuple[int, float]] = {}  # oldest unfinished offset, since
        self._next_check = 0.0

    def check(self, trackers: Mapping[TP, OffsetTracker], reason: Callable[[TP], str]) -> None:
        """``reason(tp)``: why a stalled partition waits, asked only when one is logged."""
        now = time.monotonic()
        if now < self._next_check:
            return
        self._next_check = now + min(1.0, self.stall_warning / 2)
        for tp, tracker in trackers.items():
            oldest = tracker.oldest_unfinished()
            if oldest is None:
                self._progress.pop(tp, None)
                continue
            seen = self._progress.get(tp)
            if seen is None or seen[0] != oldest:
                self._progress[tp] = (oldest, now)
            elif now - seen[1] >= self.stall_warning:
                self._progress[tp] = (oldest, now)
                log.warning(
                    "no progress on partition",
                    topic=tp[0],
                    partition=tp[1],
                    offset=oldest,
                    stalled_s=round(now - seen[1], 1),
                    reason=reason(tp),
                    worker_id=self._worker_id,
                )

    def forget(self, tp: TP) -> None:
        self._progress.pop(tp, None)
