"""``streamtasks status``: how far behind the workers are, per queue and partition.

For each queue: per partition of ``{ns}.tasks.{queue}`` the worker group's committed offset, the
end offset, the lag in messages and the lag in seconds — the age of the oldest unconsumed
record, which is the record at the committed offset, read; per retry tier the records after
the committed offset, split into due and not yet due by their ``st-not-before`` header; the
DLQ depth (dead letters neither redriven nor purged). For the group: its state and members
(host, client id, the pid parsed from a worker's client id, partitions). From the worker
heartbeats on ``{ns}.events`` (:mod:`streamtasks.ops.events`, or passed in by a caller that
follows them already): per queue the tasks/s finished
and failed over the last minute, and each worker seen in the last five minutes (id, host, pid,
queues, in flight, age of its last heartbeat, online).

Invariants: figures come from records read (:mod:`streamtasks.kafka.reader`), not from watermarks a
broker may report stale; the pure parts (:func:`lag_of`, :func:`age_seconds`,
:func:`split_due`, :func:`pid_of`) take numbers, not clients.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.table import Table

from streamtasks.kafka import clients, reader
from streamtasks.kafka.clients import GroupInfo, committed_offsets, describe_group
from streamtasks.ops.dlq import DeadLetterQueue
from streamtasks.ops.events import (
    QueueRate,
    WorkerView,
    queue_rates,
    recent_heartbeats,
    worker_views,
)
from streamtasks.wire import headers as hdr
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.events import WorkerHeartbeat
from streamtasks.wire.topics import retry_topic, task_topic

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = [
    "PartitionLag",
    "QueueStatus",
    "StatusReport",
    "TierDepth",
    "age_seconds",
    "collect",
    "lag_of",
    "pid_of",
    "render",
    "split_due",
]

_PID = re.compile(r"-(\d+)-[0-9a-f]{6}$")


# -- pure -------------------------------------------------------------------------------------
def lag_of(next_offset: int, end: int) -> int:
    """Records from the first unconsumed one (``next_offset``) to the end."""
    return max(0, end - next_offset)


def age_seconds(oldest_ts_ms: int | None, now: int) -> float:
    """How long the oldest unconsumed record has waited (0 when there is none)."""
    if oldest_ts_ms is None or oldest_ts_ms < 0:
        return 0.0
    return max(0.0, (now - oldest_ts_ms) / 1000)


def split_due(not_before: Iterable[int | None], now: int) -> tuple[int, int]:
    """``(due, not_due)`` of retry records by their ``st-not-before`` (None: due)."""
    due = waiting = 0
    for when in not_before:
        if when is not None and when > now:
            waiting += 1
        else:
            due += 1
    return due, waiting


def pid_of(client_id: str) -> int | None:
    """The pid in a worker's client id ``{host}-{pid}-{6 hex}`` (None for other clients)."""
    found = _PID.search(client_id)
    return int(found.group(1)) if found else None


# -- the report -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PartitionLag:
    partition: int
    committed: int | None
    end: int
    lag: int
    lag_seconds: float


@dataclass(frozen=True, slots=True)
class TierDepth:
    tier: int
    topic: str
    depth: int
    due: int
    not_due: int


@dataclass(frozen=True, slots=True)
class QueueStatus:
    name: str
    topic: str
    partitions: list[PartitionLag]
    retry: list[TierDepth]
    dlq_depth: int

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    @property
    def lag_seconds(self) -> float:
        return max((p.lag_seconds for p in self.partitions), default=0.0)


#: the window of the task rates
RATE_WINDOW_S = 60.0
#: workers whose last heartbeat is older than this are not listed
WORKERS_LOOKBACK_S = 300.0


@dataclass(frozen=True, slots=True)
class StatusReport:
    at_ms: int
    group: GroupInfo
    queues: list[QueueStatus]
    workers: list[WorkerView] = field(default_factory=list)
    rates: dict[str, QueueRate] = field(default_factory=dict)

    def _rates(self, queue: str) -> dict[str, float]:
        rate = self.rates.get(queue)
        return {
            "window_s": RATE_WINDOW_S,
            "finished_per_s": round(rate.finished, 3) if rate else 0.0,
            "failed_per_s": round(rate.failed, 3) if rate else 0.0,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "at_ms": self.at_ms,
            "group": {
                "id": self.group.group,
                "state": self.group.state,
                "members": [
                    {
                        "member_id": m.member_id,
                        "client_id": m.client_id,
                        "host": m.host,
                        "pid": pid_of(m.client_id),
                        "partitions": m.partitions,
                    }
                    for m in self.group.members
                ],
            },
            "queues": [
                {
                    "name": q.name,
                    "topic": q.topic,
                    "lag": q.lag,
                    "lag_seconds": round(q.lag_seconds, 3),
                    "partitions": [
                        {
                            "partition": p.partition,
                            "committed": p.committed,
                            "end": p.end,
                            "lag": p.lag,
                            "lag_seconds": round(p.lag_seconds, 3),
                        }
                        for p in q.partitions
                    ],
                    "retry": [
                        {
                            "tier": t.tier,
                            "topic": t.topic,
                            "depth": t.depth,
                            "due": t.due,
                            "not_due": t.not_due,
                        }
                        for t in q.retry
                    ],
                    "dlq_depth": q.dlq_depth,
                    "rates": self._rates(q.name),
                }
                for q in self.queues
            ],
            "workers": [w.as_dict() for w in self.workers],
        }


# -- I/O --------------------------------------------------------------------------------------
def collect(
    app: App,
    queues: Iterable[str] | None = None,
    *,
    heartbeats: Iterable[WorkerHeartbeat] | None = None,
) -> StatusReport:
    """Read the figures of ``queues`` (default: all of the app's) from the broker.

    ``heartbeats``: the worker heartbeats of the last :data:`WORKERS_LOOKBACK_S` seconds from
    a caller that follows ``{ns}.events`` already (the dashboard), used for the workers and
    the rates instead of reading that topic again; ``None``: read them here."""
    settings = app.settings
    # quiet: a broker that is down is reported as one line (BrokerError), not librdkafka's
    # connection-refused log every 50 ms
    admin = clients.make_admin({**settings.admin(), "log_level": 0})
    clients.check_reachable(admin, settings.require_bootstrap(), timeout=5.0)
    group = settings.worker_group()
    info = describe_group(admin, group)
    out: list[QueueStatus] = []
    consumer = reader.open_reader(app)
    try:
        for queue in queues if queues is not None else app.queues():
            topic = task_topic(settings.namespace, queue)
            parts = reader.partitions_of(consumer, topic)
            if not parts:
                continue  # no topics yet (`streamtasks topics apply` or a worker creates them)
            committed = committed_offsets(admin, group, topic, parts)
            now = now_ms()
            heads = reader.heads(consumer, {(topic, p): _start(committed[p]) for p in parts})
            lags = []
            for p in parts:
                head = heads[(topic, p)]
                oldest = None if head.first is None else reader.record_ts(head.first)
                lags.append(
                    PartitionLag(
                        p,
                        committed[p],
                        head.end,
                        lag_of(head.first_offset, head.end),
                        age_seconds(oldest, now),
                    )
                )
            tiers = [
                _tier(app, admin, consumer, group, queue, n)
                for n in range(1, len(settings.retry_tiers) + 1)
            ]
            dlq = len(DeadLetterQueue(app, queue).read())
            out.append(QueueStatus(queue, topic, lags, tiers, dlq))
    finally:
        consumer.close()
    at = now_ms()
    since = at - int(WORKERS_LOOKBACK_S * 1000)
    if heartbeats is None:
        beats = recent_heartbeats(app, since)
    else:
        beats = [hb for hb in heartbeats if hb.timestamp >= since]
    return StatusReport(
        at, info, out, worker_views(beats, at), queue_rates(beats, at, RATE_WINDOW_S)
    )


def _start(committed: int | None) -> int:
    return reader.BEGINNING if committed is None else committed


def _tier(app: App, admin: Any, consumer: Any, group: str, queue: str, tier: int) -> TierDepth:
    topic = retry_topic(app.settings.namespace, queue, tier)
    parts = reader.partitions_of(consumer, topic)
    committed = committed_offsets(admin, group, topic, parts) if parts else {}
    due_times: list[int | None] = []
    for msg in reader.read_range(consumer, {(topic, p): _start(committed[p]) for p in parts}):
        raw = dict(msg.headers() or []).get(hdr.NOT_BEFORE)
        text = raw.decode() if isinstance(raw, bytes) else raw
        due_times.append(int(text) if text and text.isdigit() else None)
    due, waiting = split_due(due_times, now_ms())
    return TierDepth(tier, topic, len(due_times), due, waiting)


def render(report: StatusReport) -> list[Table]:
    """The report as rich tables: one per queue, one of workers."""
    tables = []
    for q in report.queues:
        t = Table(
            title=f"{q.name} ({q.topic}): lag {q.lag}, {q.lag_seconds:.1f}s; DLQ {q.dlq_depth}; "
            + ", ".join(f"tier {r.tier} {r.depth} ({r.due} due)" for r in q.retry)
            + _rate_text(report.rates.get(q.name))
        )
        for column in ("partition", "committed", "end", "lag", "lag s"):
            t.add_column(column, justify="right")
        for p in q.partitions:
            committed = "-" if p.committed is None else str(p.committed)
            t.add_row(str(p.partition), committed, str(p.end), str(p.lag), f"{p.lag_seconds:.1f}")
        tables.append(t)
    w = Table(title=f"group {report.group.group}: {report.group.state}")
    for column in ("client id", "host", "pid", "partitions"):
        w.add_column(column, overflow="fold")
    for m in report.group.members:
        pid = pid_of(m.client_id)
        w.add_row(m.client_id, m.host, "-" if pid is None else str(pid), ", ".join(m.partitions))
    tables.append(w)
    if report.workers:
        tables.append(_workers_table(report.workers))
    return tables


def _rate_text(rate: QueueRate | None) -> str:
    if rate is None:
        return ""
    return f"; {rate.finished:.1f} tasks/s finished, {rate.failed:.1f} failed (last minute)"


def _workers_table(workers: list[WorkerView]) -> Table:
    t = Table(title="workers (heartbeats)")
    for column in ("worker", "host", "pid", "queues", "in flight", "last heartbeat", "online"):
        t.add_column(column, overflow="fold")
    for v in workers:
        hb = v.heartbeat
        t.add_row(
            hb.worker_id,
            hb.host,
            str(hb.pid),
            ",".join(hb.queues),
            str(hb.in_flight),
            f"{v.age_seconds:.1f}s ago",
            "yes" if v.online else f"no ({hb.state.value.lower()})",
        )
    return t
