"""What each dashboard page shows, as plain values for its template (no HTTP here).

Each ``*_page`` function reads :class:`~streamtasks.dashboard.tails.Tails` (and, for the dead
letters, the DLQ topics through :class:`~streamtasks.ops.dlq.DeadLetterQueue`) and returns a
dict for the Jinja template of the same name. Task data is passed on as it is: the templates
autoescape every value.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from streamtasks.dashboard.aggregates import MinuteBucket, totals
from streamtasks.errors import StreamtasksError
from streamtasks.ops.deadletters import DeadLetter, format_age
from streamtasks.ops.dlq import DeadLetterQueue
from streamtasks.ops.events import WorkerView, worker_views
from streamtasks.ops.status import pid_of
from streamtasks.wire.envelope import TaskStatus, now_ms

if TYPE_CHECKING:
    from streamtasks.dashboard.tails import Tails

__all__ = [
    "Bar",
    "chart",
    "dlq_page",
    "failures_page",
    "letter_page",
    "overview_page",
    "schedules_page",
    "task_page",
    "tasks_page",
    "workers_page",
]

CHART_W, CHART_H = 600, 80


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    w: float
    ok_y: float
    ok_h: float
    fail_y: float
    fail_h: float
    title: str


def chart(buckets: list[MinuteBucket]) -> list[Bar]:
    """One bar per minute, finished (height) with its failed part, scaled to the busiest."""
    top = max((b.finished for b in buckets), default=0) or 1
    w = CHART_W / max(len(buckets), 1)
    bars = []
    for i, b in enumerate(buckets):
        fail_h = round(CHART_H * b.failed / top, 2)
        ok_h = round(CHART_H * (b.finished - b.failed) / top, 2)
        bars.append(
            Bar(
                round(i * w, 2),
                round(w * 0.8, 2),
                max(0.0, round(CHART_H - fail_h - ok_h, 2)),
                ok_h,
                round(CHART_H - fail_h, 2),
                fail_h,
                f"-{len(buckets) - 1 - i} min: {b.finished} finished, {b.failed} failed",
            )
        )
    return bars


def overview_page(tails: Tails) -> dict[str, Any]:
    now = now_ms()
    report = tails.status
    by_name = {q.name: q for q in report.queues} if report else {}
    queues = []
    for name in tails.app.queues():
        buckets = tails.agg.minutes_view(name, now)
        finished, failed = totals(buckets)
        queues.append(
            {
                "name": name,
                "status": by_name.get(name),
                "rate": report.rates.get(name) if report else None,
                "finished": finished,
                "failed": failed,
                "failure_rate": failed / finished if finished else 0.0,
                "per_minute": finished / len(buckets) if buckets else 0.0,
                "bars": chart(buckets),
                "alarm": tails.agg.lag_alarm(name, now),
            }
        )
    return {
        "queues": queues,
        "workers": [w for w in workers_page(tails)["workers"] if w["online"]],
        "group": report.group if report else None,
        "chart_w": CHART_W,
        "chart_h": CHART_H,
    }


def tasks_page(tails: Tails, *, task: str | None, status: str | None) -> dict[str, Any]:
    rows = tails.agg.recent_view(task=task or None, status=status or None)
    return {
        "rows": rows,
        "task": task or "",
        "status": status or "",
        "statuses": [s.value for s in TaskStatus],
        "names": sorted(tails.app.tasks),
        "now": now_ms(),
        "age": format_age,
    }


def task_page(tails: Tails, task_id: str) -> dict[str, Any]:
    with tails.result_store() as store:
        result = store.get(task_id)
    args_text, args_error = _args(tails, task_id)
    value_text = None
    if result is not None and result.value is not None and result.task in tails.app.tasks:
        try:
            value_text = repr(tails.app.tasks[result.task].decode_result(result.value))
        except StreamtasksError as exc:
            value_text = f"(cannot decode: {exc})"
    return {
        "task_id": task_id,
        "result": result,
        "value": value_text,
        "timeline": tails.agg.timeline(task_id),
        "args": args_text,
        "args_error": args_error,
    }


def _args(tails: Tails, task_id: str) -> tuple[str | None, str | None]:
    seen = tails.agg.args_of(task_id)
    if seen is None:
        return None, "not among the recent task events the dashboard keeps"
    name, frame = seen
    task = tails.app.tasks.get(name)
    if task is None:
        return None, f"task {name!r} is not registered in this app"
    try:
        args, kwargs = task.decode_args(frame)
    except StreamtasksError as exc:
        return None, f"cannot decode: {exc}"
    return _call(args, kwargs), None


def _call(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    parts = [repr(a) for a in args] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return "(" + ", ".join(parts) + ")"


def failures_page(tails: Tails) -> dict[str, Any]:
    return {"groups": tails.agg.failures_view(), "now": now_ms(), "age": format_age}


def _letters(tails: Tails, queue: str) -> list[DeadLetter]:
    return DeadLetterQueue(tails.app, queue).read(timeout=5.0)


def dlq_page(
    tails: Tails, *, queue: str | None, task: str | None, error_match: str | None
) -> dict[str, Any]:
    queues = tails.app.queues()
    chosen = queue if queue in queues else queues[0]
    dlq = DeadLetterQueue(tails.app, chosen)
    letters = dlq.select(task=task or None, error_match=error_match or None, timeout=5.0)
    return {
        "queues": queues,
        "queue": chosen,
        "task": task or "",
        "error_match": error_match or "",
        "letters": list(reversed(letters)),
        "now": now_ms(),
        "age": format_age,
    }


def letter_page(tails: Tails, queue: str, ref: str) -> dict[str, Any]:
    dlq = DeadLetterQueue(tails.app, queue)
    letter = dlq.get(ref, timeout=5.0)
    try:
        args_text, args_error = _call(*dlq.arguments(letter)), None
    except StreamtasksError as exc:
        args_text, args_error = None, str(exc)
    return {
        "queue": queue,
        "letter": letter,
        "args": args_text,
        "args_error": args_error,
        "now": now_ms(),
        "age": format_age,
    }


def schedules_page(tails: Tails) -> dict[str, Any]:
    return {"schedules": tails.schedules, "has_schedules": bool(tails.app.schedules)}


def workers_page(tails: Tails) -> dict[str, Any]:
    """Workers from their heartbeats; without any (no worker sent one yet), the consumer
    group's members as the broker describes them."""
    now = now_ms()
    views = worker_views(tails.agg.heartbeats(), now)
    if views:
        return {
            "workers": [_view_row(v, now, tails.app.settings.namespace) for v in views],
            "from_heartbeats": True,
        }
    members = tails.status.group.members if tails.status else []
    rows = [
        {
            "id": m.client_id,
            "online": True,
            "host": m.host,
            "pid": pid_of(m.client_id),
            "queues": "",
            "partitions": ", ".join(m.partitions),
            "concurrency": "",
            "in_flight": "",
            "counters": "",
            "uptime": "",
            "last_heartbeat": "(group member; no heartbeat)",
        }
        for m in members
    ]
    return {"workers": rows, "from_heartbeats": False}


def compact_partitions(parts: Iterable[str], ns: str) -> str:
    """``"tasks.default 0-5; tasks.default.retry.1 0-2, 4"`` from ``"{ns}.tasks.default:0"``
    (or ``[0]``) names: per topic, without the namespace, runs of partitions joined."""
    by_topic: dict[str, list[int]] = {}
    for name in parts:
        found = re.fullmatch(r"(.+?)(?::(\d+)|\[(\d+)\])", name)
        if found is None:
            by_topic.setdefault(name, [])
            continue
        topic = found.group(1).removeprefix(ns + ".")
        by_topic.setdefault(topic, []).append(int(found.group(2) or found.group(3)))
    return "; ".join(f"{t} {_runs(sorted(ps))}".strip() for t, ps in sorted(by_topic.items()))


def _runs(numbers: list[int]) -> str:
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    return ", ".join(str(a) if a == b else f"{a}-{b}" for a, b in runs)


def _view_row(view: WorkerView, now: int, ns: str) -> dict[str, Any]:
    hb = view.heartbeat
    counters = ", ".join(f"{k} {v}" for k, v in sorted(hb.counters.items()) if v)
    return {
        "id": hb.worker_id,
        "online": view.online,
        "host": hb.host,
        "pid": hb.pid,
        "queues": ", ".join(hb.queues),
        "partitions": compact_partitions(hb.partitions, ns),
        "concurrency": hb.concurrency,
        "in_flight": hb.in_flight,
        "counters": counters,
        "uptime": format_age(hb.started_at, now),
        "last_heartbeat": f"{view.age_seconds:.0f}s ago ({hb.state.value})",
    }
