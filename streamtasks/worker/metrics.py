"""Prometheus metrics of a worker: a hook that counts, and the ``/metrics`` HTTP endpoint.

``streamtasks worker APP --metrics-port N`` (``Worker(app, metrics_port=N)``) serves, with
``prometheus-client``:

* ``streamtasks_tasks_total{task,queue,status}`` — finished task records by outcome (``success``,
  ``failure``, ``retry``, ``dead``, ``expired``, ``skipped``, ``revoked``);
* ``streamtasks_task_duration_seconds{task,queue}`` — histogram of the time a task thread spent
  on a record (decode, run, build outputs; acknowledgement waits not included);
* ``streamtasks_tasks_in_flight{queue}`` — received and not finished;
* ``streamtasks_consumer_lag{topic,partition}`` — librdkafka's ``consumer_lag`` (high watermark
  minus committed offset), from the consumer's statistics every ``lag_interval`` seconds;
* ``streamtasks_consumer_lag_seconds{topic,partition}`` — the age of the oldest unconsumed record,
  sampled off the hot path: 0 when the consumer's position is at the high watermark, else the
  age of the last record the worker received from that partition (the oldest unconsumed record
  came after it, so this is an upper bound, exact to within the gap between two records);
* ``streamtasks_dead_letters_total{queue,reason}``, ``streamtasks_retries_total{queue,tier}``;
* ``streamtasks_rebalances_total`` — partition assignments this worker received;
* ``streamtasks_commits_total`` — batches of offsets stored for commit (librdkafka sends them to
  the broker with its next auto-commit; the worker commits synchronously on revoke and stop).

Invariants: the hook runs on the poll thread and only observes (see
:mod:`streamtasks.worker.hooks`). Per record it does a few dictionary updates and one
histogram observation; the task counts, commits and in-flight gauges are written to
prometheus-client at most every 0.1 s while offsets are stored, on each rebalance and on each
lag sample (so a scrape is at most ``lag_interval`` seconds behind). That keeps its cost at
~2.5 us of poll-thread CPU per task here (``python bench/overhead.py``). Task labels are
the app's task names (another name, from bad input, counts as ``unknown``). With
``--processes P`` the supervisor serves the port and every child writes its values to a
per-run ``PROMETHEUS_MULTIPROC_DIR`` (:mod:`streamtasks.worker.supervisor`), so one scrape
shows the sum over the children (lag gauges
show the highest live value: only a partition's owner reports it non-zero).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streamtasks.errors import ConfigError
from streamtasks.wire.topics import queue_of
from streamtasks.worker.hooks import TaskDone, WorkerHooks
from streamtasks.worker.outcomes import Record

__all__ = ["WorkerMetrics", "exposed_names", "serve_metrics"]

TP = tuple[str, int]

_FLUSH_EVERY = 0.1  # seconds between writes of the per-task counts while tasks finish

#: seconds; from fast I/O-bound tasks to long batch jobs
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class WorkerMetrics(WorkerHooks):
    """The worker hook that keeps the ``streamtasks_*`` metrics in ``registry``."""

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        namespace: str = "streamtasks",
        lag_interval: float = 5.0,
        tasks: Iterable[str] | None = None,
    ) -> None:
        """``tasks``: the task names to label by; a record naming another task (bad input)
        counts as ``unknown``, so records cannot grow the label set without bound."""
        if lag_interval <= 0:
            raise ConfigError(f"the metrics lag interval must be > 0 seconds, got {lag_interval}")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.stats_interval_ms = max(1, int(lag_interval * 1000))
        r = self.registry
        self.tasks = Counter(
            "streamtasks_tasks", "Finished task records", ["task", "queue", "status"], registry=r
        )
        self.duration = Histogram(
            "streamtasks_task_duration_seconds",
            "Time a task thread spent on a record",
            ["task", "queue"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "streamtasks_tasks_in_flight",
            "Received task records not finished yet",
            ["queue"],
            multiprocess_mode="livesum",
            registry=r,
        )
        # per partition; only its owner reports a value, so processes combine by the highest
        self.lag, self.lag_seconds = (
            Gauge(name, doc, ["topic", "partition"], multiprocess_mode="livemax", registry=r)
            for name, doc in (
                ("streamtasks_consumer_lag", "High watermark minus committed offset"),
                (
                    "streamtasks_consumer_lag_seconds",
                    "Age of the oldest unconsumed record (upper bound, sampled)",
                ),
            )
        )
        self.dead_letters = Counter(
            "streamtasks_dead_letters", "Dead letters written", ["queue", "reason"], registry=r
        )
        self.retries = Counter(
            "streamtasks_retries", "Retries written, by tier", ["queue", "tier"], registry=r
        )
        self.rebalances = Counter(
            "streamtasks_rebalances", "Partition assignments received", registry=r
        )
        self.commits = Counter(
            "streamtasks_commits", "Batches of offsets stored for commit", registry=r
        )
        self._ns = namespace
        self._known = frozenset(tasks) if tasks is not None else None
        self._flight: dict[TP, int] = {}
        self._queue_flight: dict[str, int] = {}
        self._written_flight: dict[str, int] = {}
        self._last_ts: dict[TP, int] = {}
        self._owned: set[tuple[str, str]] = set()  # (topic, partition as text): lag reported
        self._flight_child: dict[str, Gauge] = {}
        self._commits = 0  # not yet added to the counter
        self._next_flush = 0.0
        self._done_child: dict[tuple[str, str, str], Counter] = {}
        self._done: dict[tuple[str, str, str], int] = {}  # not yet added to the counters
        self._duration_child: dict[tuple[str, str], Histogram] = {}

    def flush(self) -> None:
        """Write the counts kept in plain dictionaries to the metrics: at most every 0.1 s
        while offsets are stored, and on each lag sample and rebalance — not once per task,
        as a metric update takes a lock (and, across processes, an mmap write)."""
        self._next_flush = time.monotonic() + _FLUSH_EVERY
        done, self._done = self._done, {}
        for key, count in done.items():
            child = self._done_child.get(key)
            if child is None:
                child = self._done_child[key] = self.tasks.labels(*key)
            child.inc(count)
        if self._commits:
            self.commits.inc(self._commits)
            self._commits = 0
        for queue, count in self._queue_flight.items():
            if self._written_flight.get(queue) != count:
                gauge = self._flight_child.get(queue)
                if gauge is None:
                    gauge = self._flight_child[queue] = self.in_flight.labels(queue)
                gauge.set(count)
                self._written_flight[queue] = count

    # -- hooks (poll thread) ----------------------------------------------------------------
    def on_received(self, record: Record) -> None:
        tp = (record.topic, record.partition)
        self._flight[tp] = self._flight.get(tp, 0) + 1
        queue = queue_of(record.topic, self._ns)
        self._queue_flight[queue] = self._queue_flight.get(queue, 0) + 1
        if record.timestamp is not None and record.timestamp > 0:
            self._last_ts[tp] = record.timestamp

    def on_task_done(self, record: Record, done: TaskDone) -> None:
        task = done.task
        if self._known is not None and task not in self._known:
            task = "unknown"
        key = (task, done.queue, done.outcome)
        self._done[key] = self._done.get(key, 0) + 1
        if done.runtime is not None:
            hist = self._duration_child.get(key[:2])
            if hist is None:
                hist = self._duration_child[key[:2]] = self.duration.labels(*key[:2])
            hist.observe(done.runtime)
        if done.outcome == "retry":
            self.retries.labels(done.queue, done.detail or "unknown").inc()
        elif done.outcome == "dead":
            self.dead_letters.labels(done.queue, done.detail or "unknown").inc()
        tp = (record.topic, record.partition)
        left = self._flight.get(tp, 0)
        if left > 0:  # not when its partition was revoked meanwhile (counted off then)
            self._flight[tp] = left - 1
            self._queue_flight[done.queue] -= 1

    def on_committed(self, offsets: Sequence[tuple[str, int, int]]) -> None:
        self._commits += 1
        if time.monotonic() >= self._next_flush:
            self.flush()

    def on_assigned(self, partitions: Sequence[TP]) -> None:
        self.rebalances.inc()
        self._owned.update((topic, str(p)) for topic, p in partitions)
        self.flush()

    def on_revoked(self, partitions: Sequence[TP], *, lost: bool) -> None:
        for tp in partitions:
            left = self._flight.pop(tp, 0)
            if left:
                self._queue_flight[queue_of(tp[0], self._ns)] -= left
            self._last_ts.pop(tp, None)
            labels = (tp[0], str(tp[1]))
            self._owned.discard(labels)
            for gauge in (self.lag, self.lag_seconds):
                gauge.labels(*labels).set(0)  # what a multiprocess scrape keeps
                gauge.remove(*labels)
        self.flush()

    def on_consumer_stats(self, stats: str) -> None:
        self.flush()
        now = time.time() * 1000
        for topic, t in json.loads(stats).get("topics", {}).items():
            for part, p in t.get("partitions", {}).items():
                lag = p.get("consumer_lag", -1)
                if lag < 0 or (topic, part) not in self._owned:
                    continue  # not known yet, not ours (any more), or the internal -1
                self.lag.labels(topic, part).set(lag)
                hi, position = p.get("hi_offset", -1), p.get("app_offset", -1)
                if 0 <= hi <= position:
                    self.lag_seconds.labels(topic, part).set(0)
                    continue
                last = self._last_ts.get((topic, int(part)))
                if last is not None:
                    self.lag_seconds.labels(topic, part).set(max(0.0, (now - last) / 1000))


def serve_metrics(registry: CollectorRegistry, port: int, host: str = "") -> Callable[[], None]:
    """Serve ``registry`` on ``host:port`` (all interfaces by default) in a daemon thread;
    returns the function that stops it. A port in use is a :class:`ConfigError`."""
    if not 0 <= port <= 65535:
        raise ConfigError(f"--metrics-port must be a TCP port (0-65535), got {port}")
    try:
        server, thread = start_http_server(port, addr=host or "0.0.0.0", registry=registry)
    except OSError as exc:
        raise ConfigError(
            f"cannot serve metrics on port {port}: {exc.strerror or exc}. Another process "
            "holds it (an earlier worker?): pass a free --metrics-port, or stop that process"
        ) from exc

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5.0)

    return stop


_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exposed_names() -> frozenset[str]:
    """Every series name a worker exposes (``streamtasks_tasks_total``, ``..._bucket``, ...)."""
    registry = CollectorRegistry()
    WorkerMetrics(registry)
    return frozenset(
        metric.name + suffix
        for metric in registry.collect()
        for suffix in _SUFFIXES.get(metric.type, ("",))
    )
