"""Overhead of optional worker features: throughput and CPU per task with a feature on vs off.

Used by ``bench/run.py --parts overhead``: each variant (a name and the ``streamtasks worker``
options that turn it on, e.g. ``metrics`` = ``--metrics-port 0``) runs the workers-only part
(b') — pre-encoded envelopes from a bare producer, results counted by the raw reader — on fresh
topics with freshly started workers. Variants are interleaved (off, metrics, off, metrics, ...)
so a change in the shared machine's load hits them alike; each is repeated ``repeats`` times and
reported as median (min-max). The overhead of a variant is its median worker CPU per task (and
its median throughput) against the ``off`` variant's.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

#: variant name -> the worker options that turn it on ("off": none)
VARIANTS: dict[str, list[str]] = {
    "off": [],
    "metrics": ["--metrics-port", "0"],  # port 0: any free port (nothing scrapes in the bench)
    "events": ["--events"],
    "metrics+events": ["--metrics-port", "0", "--events"],
}


def measure(
    run_once: Callable[[list[str]], dict[str, Any]], variants: Sequence[str], repeats: int
) -> dict[str, Any]:
    """``run_once(extra_worker_args)`` -> a workers-only result (``n``, ``tasks_per_s``,
    ``cpu_s``); returns every run and the summary per variant."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown overhead variants {unknown}; known: {sorted(VARIANTS)}")
    names = ["off", *(v for v in variants if v != "off")]
    runs: dict[str, list[dict[str, Any]]] = {v: [] for v in names}
    for i in range(repeats):
        for name in names:
            r = run_once(VARIANTS[name])
            runs[name].append(r)
            us = 1e6 * r["cpu_s"]["workers"] / r["n"]
            print(
                f"  overhead run {i + 1}/{repeats} {name}: {r['tasks_per_s']:,.0f} tasks/s, "
                f"workers {us:.1f} us/task",
                flush=True,
            )
    return {"runs": runs, "summary": summarize(runs)}


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, rs in runs.items():
        out[name] = {
            "tasks_per_s": _spread([r["tasks_per_s"] for r in rs]),
            "worker_us_per_task": _spread([1e6 * r["cpu_s"]["workers"] / r["n"] for r in rs]),
            "total_us_per_task": _spread([1e6 * sum(r["cpu_s"].values()) / r["n"] for r in rs]),
        }
    base = out.get("off")
    if base is not None:
        for s in out.values():
            s["cpu_overhead_pct"] = 100 * (
                s["worker_us_per_task"]["median"] / base["worker_us_per_task"]["median"] - 1
            )
            s["throughput_change_pct"] = 100 * (
                s["tasks_per_s"]["median"] / base["tasks_per_s"]["median"] - 1
            )
    return out


def rows(summary: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Table rows: one per variant."""
    out = []
    for name, s in summary.items():
        t, w = s["tasks_per_s"], s["worker_us_per_task"]
        text = (
            f"{t['median']:,.0f} tasks/s ({t['min']:,.0f}-{t['max']:,.0f}); workers "
            f"{w['median']:.1f} us/task ({w['min']:.1f}-{w['max']:.1f})"
        )
        if name != "off" and "cpu_overhead_pct" in s:
            text += (
                f"; CPU {s['cpu_overhead_pct']:+.1f} %, throughput "
                f"{s['throughput_change_pct']:+.1f} % vs off"
            )
        out.append((f"(g) overhead: {name}", text))
    return out


def hook_cost(n: int = 200_000, repeats: int = 3) -> dict[str, dict[str, float]]:
    """CPU per task (us) of the hook calls the poll thread makes for one task record
    (received, started, finished + task_done; a commit per 100), with the default hooks only
    and with the metrics hook added: the metrics' own cost, without broker or scheduling noise."""
    from prometheus_client import CollectorRegistry

    from streamtasks.worker.hooks import HookSet, WorkerHooks, WorkerStats
    from streamtasks.worker.metrics import WorkerMetrics
    from streamtasks.worker.outcomes import Record

    topic = "streamtasks.tasks.default"
    recs = [
        Record(topic, i % 6, i, None, b"", [("st-task", b"bench.noop"), ("st-id", b"x")], 1)
        for i in range(1000)
    ]

    def once(hooks: HookSet) -> float:
        t0 = time.process_time()
        for i in range(n):
            rec = recs[i % 1000]
            hooks.received(rec)
            hooks.started(rec)
            hooks.finished(rec, "success")
            hooks.task_done(rec, "success", 0.0001, None)
            if i % 100 == 0:
                hooks.committed([(topic, rec.partition, rec.offset + 1)])
        return 1e6 * (time.process_time() - t0) / n

    out: dict[str, dict[str, float]] = {}
    for name in ("stats only", "stats + metrics"):
        times = []
        for _ in range(repeats):
            hooks: list[WorkerHooks] = [WorkerStats()]
            if name != "stats only":
                hooks.append(WorkerMetrics(CollectorRegistry()))
            times.append(once(HookSet(hooks)))
        out[name] = _spread(times)
    return out


if __name__ == "__main__":  # python bench/overhead.py: the hooks' own CPU per task
    for label, s in hook_cost().items():
        print(f"{label}: {s['median']:.2f} us/task ({s['min']:.2f}-{s['max']:.2f})")
