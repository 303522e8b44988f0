"""Scale: N no-op tasks end to end, to see whether the rate or the memory degrades as N grows.

    python bench/scale.py [--n 1000000] [--batch 10000] [--window 50000] [--sample 10]
                          [--workers 2] [--broker tansu|kafka | --bootstrap-servers HOST:PORT]
                          [--json out.json]

One client process sends N ``bench.noop`` tasks with ``send_many`` in batches of ``--batch``
to ``--workers`` ``streamtasks worker`` processes (joined before the clock starts, as in
run.py) and awaits every handle with ``get()`` in send order on a second thread, keeping at
most ``--window`` tasks sent but not yet awaited (a sender that outruns its workers by
millions is not a use case; the window is well below ``result_capacity``, 200,000 by default,
so the listener does not forget a handle before its result arrives). Handles are dropped once
awaited, except for ``--sample`` handles spread over the first half of the run, which are
*not* awaited during the run: at the end, when N exceeds ``result_capacity`` they have been
evicted from the listener, and ``get()`` on them must look them up in the results topic.
``--recall K`` keeps the first K handles too and awaits them at the end in send order (a
user's ``for h in handles: h.get()`` after the run): the scans of the results topic that
served them, and their time.

Printed: the steady rate (N / first to last ``finished_at`` of the results), the rate of each
tenth of the run (by when the awaiting thread saw the completions) with the RSS of the client,
each worker and the broker at that point, the RSS at the end, how many handles resolved (and
how many returned a wrong value), how long the sample's ``get()`` look-ups took, CPU per task
by process and the load average.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import make_app  # noqa: E402
from run import WARMUP, CpuMeter, Ctx, broker, proc_mem, st_workers  # noqa: E402

SLICES = 10
NO_SPY = (None, None, False, False)


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def rss_mib(pid: int | None) -> float:
    return proc_mem(pid).get("VmRSS", 0.0) if pid else 0.0


class Awaiter(threading.Thread):
    """Awaits handles in send order; bounds how far the sender may run ahead."""

    def __init__(self, n: int, window: int, pids: dict[str, int | None]) -> None:
        super().__init__(name="scale-awaiter", daemon=True)
        self.n, self.window, self.pids = n, window, pids
        self.queue: collections.deque[tuple[int, Any]] = collections.deque()
        self.cond = threading.Condition()
        self.expected = 0  # handles handed over (sample ones excluded)
        self.done = 0
        self.wrong = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.slices: list[dict[str, Any]] = []
        self.error: str | None = None

    def put(self, items: list[tuple[int, Any]]) -> None:
        with self.cond:
            self.queue.extend(items)
            self.expected += len(items)
            self.cond.notify_all()

    def wait_room(self) -> None:
        with self.cond:
            while self.expected - self.done > self.window and self.error is None:
                self.cond.wait(1.0)

    def _take(self) -> tuple[int, Any] | None:
        with self.cond:
            while not self.queue:
                if self.done >= self.n:
                    return None
                self.cond.wait(1.0)
            return self.queue.popleft()

    def run(self) -> None:
        try:
            self._run()
        except Exception as exc:  # reported by main, not lost in a thread
            self.error = repr(exc)
            with self.cond:
                self.cond.notify_all()

    def _run(self) -> None:
        step = max(1, self.n // SLICES)
        t_prev, done_prev = time.perf_counter(), 0
        while self.done < self.n:
            item = self._take()
            if item is None:
                break
            i, handle = item
            if handle.get(timeout=300) != i:
                self.wrong += 1
            rec = handle.record()
            if rec is not None and rec.finished_at is not None:
                f = rec.finished_at
                self.first_ms = f if self.first_ms is None else min(self.first_ms, f)
                self.last_ms = f if self.last_ms is None else max(self.last_ms, f)
            with self.cond:
                self.done += 1
                self.cond.notify_all()
            if self.done % step == 0 or self.done == self.n:
                now = time.perf_counter()
                self.slices.append(
                    {
                        "done": self.done,
                        "tasks_per_s": (self.done - done_prev) / (now - t_prev),
                        "rss_mib": {k: rss_mib(p) for k, p in self.pids.items()},
                        "load": load(),
                    }
                )
                t_prev, done_prev = now, self.done
                print(f"  ... {self.done:,} done, load {load()}", file=sys.stderr, flush=True)


def sample_indexes(n: int, sample: int) -> set[int]:
    """``sample`` indexes spread over the first half of the run (the earliest results)."""
    if sample <= 0:
        return set()
    half = max(1, n // 2)
    return {min(n - 1, k * half // sample) for k in range(sample)}


def run(ctx: Ctx, n: int, batch: int, window: int, sample: int, recall: int) -> dict[str, Any]:
    app = make_app(f"benchscale{uuid.uuid4().hex[:8]}", ctx.bootstrap)
    noop = app.tasks["bench.noop"]
    try:
        app.apply_topics()
        with st_workers(ctx, app, "scale") as workers:
            app.connect()
            for h in noop.send_many([(i,) for i in range(WARMUP)]):
                h.get(timeout=60)
            pids: dict[str, int | None] = {"client": os.getpid(), "broker": ctx.broker_pid}
            pids.update({f"worker{k}": w.pid for k, w in enumerate(workers)})
            picked = sample_indexes(n, sample) | set(range(min(n, recall)))
            awaiter = Awaiter(n - len(picked), window, pids)
            kept: list[tuple[int, Any]] = []
            load_before = load()
            with CpuMeter(ctx.broker_pid, [w.pid for w in workers]) as cpu:
                t0 = time.perf_counter()
                awaiter.start()
                for start in range(0, n, batch):
                    awaiter.wait_room()
                    if awaiter.error:
                        raise RuntimeError(awaiter.error)
                    handles = noop.send_many([(i,) for i in range(start, min(n, start + batch))])
                    items = list(enumerate(handles, start))
                    kept.extend(item for item in items if item[0] in picked)
                    awaiter.put([item for item in items if item[0] not in picked])
                    del handles, items
                t_sent = time.perf_counter()
                awaiter.join()
                t_done = time.perf_counter()
            if awaiter.error:
                raise RuntimeError(awaiter.error)
            rss_end = {k: proc_mem(p) if p else {} for k, p in pids.items()}
            listener = app.results_listener(history=False)
            lookups_before, scans_before = listener.lookups, listener.scans
            t_look = time.perf_counter()
            late = [(i, h) for i, h in kept if i >= recall]
            sample_ok = sum(1 for i, h in late if h.get(timeout=300) == i)
            look_s = time.perf_counter() - t_look
            sample_scans = listener.scans - scans_before
            in_order = [(i, h) for i, h in kept if i < recall]
            del kept
            lookups_mid, scans_mid = listener.lookups, listener.scans
            t_rec = time.perf_counter()
            recall_ok = sum(1 for i, h in in_order if h.get(timeout=300) == i)
            recall_s = time.perf_counter() - t_rec
            rss_recall = proc_mem(os.getpid())
        steady = None
        if awaiter.first_ms is not None and awaiter.last_ms is not None:
            steady = n / max(1e-3, (awaiter.last_ms - awaiter.first_ms) / 1000)
        return {
            "n": n,
            "batch": batch,
            "window": window,
            "result_capacity": app.settings.result_capacity,
            "send_s": t_sent - t0,
            "total_s": t_done - t0,
            "steady_tasks_per_s": steady,
            "slices": awaiter.slices,
            "resolved_in_run": awaiter.done,
            "wrong_results": awaiter.wrong,
            "sample": len(late),
            "sample_resolved": sample_ok,
            "sample_lookups": lookups_mid - lookups_before,
            "sample_scans": sample_scans,
            "sample_get_s": look_s,
            "recall": len(in_order),
            "recall_resolved": recall_ok,
            "recall_lookups": listener.lookups - lookups_mid,
            "recall_scans": listener.scans - scans_mid,
            "recall_get_s": recall_s,
            "rss_after_recall_mib": rss_recall,
            "rss_end_mib": rss_end,
            "cpu_s": cpu.used,
            "load_before": load_before,
            "load_after": load(),
        }
    finally:
        app.close()


def report(r: dict[str, Any]) -> None:
    n = r["n"]
    print(
        f"n={n:,} batch={r['batch']:,} window={r['window']:,} "
        f"result_capacity={r['result_capacity']:,}; load {r['load_before']} -> {r['load_after']}"
    )
    steady = r["steady_tasks_per_s"]
    print(
        f"steady rate (first -> last finished_at): {steady:,.0f} tasks/s; "
        f"first send -> last get(): {r['total_s']:.1f} s ({n / r['total_s']:,.0f}/s); "
        f"sending took {r['send_s']:.1f} s"
    )
    for s in r["slices"]:
        mem = ", ".join(f"{k} {v:.0f}" for k, v in s["rss_mib"].items())
        print(f"  {s['done']:>9,} done: {s['tasks_per_s']:>8,.0f} tasks/s  RSS MiB: {mem}")
    end = ", ".join(
        f"{k} {m.get('VmRSS', 0):.0f} (peak {m.get('VmHWM', 0):.0f})"
        for k, m in r["rss_end_mib"].items()
    )
    print(f"RSS at the end, MiB: {end}")
    total = r["resolved_in_run"] + r["sample_resolved"] + r["recall_resolved"]
    print(
        f"resolved: {total:,} of {n:,} ({r['resolved_in_run']:,} awaited during the run, "
        f"{r['wrong_results']} wrong values; sample of {r['sample']} early handles: "
        f"{r['sample_resolved']} resolved by get() at the end, {r['sample_lookups']} by "
        f"look-up in {r['sample_scans']} scans, {r['sample_get_s']:.1f} s)"
    )
    if not r["recall"]:
        mem = r["rss_after_recall_mib"]
        print(
            f"client RSS after the sample's look-ups: {mem.get('VmRSS', 0):.0f} MiB "
            f"(peak {mem.get('VmHWM', 0):.0f})"
        )
    if r["recall"]:
        mem = r["rss_after_recall_mib"]
        print(
            f"first {r['recall']:,} handles awaited in order at the end: "
            f"{r['recall_resolved']:,} resolved in {r['recall_get_s']:.1f} s, "
            f"{r['recall_lookups']:,} look-ups served by {r['recall_scans']} scans; client RSS "
            f"after {mem.get('VmRSS', 0):.0f} MiB (peak {mem.get('VmHWM', 0):.0f})"
        )
    cpu = r["cpu_s"]
    per = ", ".join(f"{k} {1e6 * v / n:.0f}" for k, v in cpu.items())
    print(f"CPU per task, us: {per}; total {1e6 * sum(cpu.values()) / n:.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=10_000, help="tasks per send_many call")
    ap.add_argument("--window", type=int, default=50_000, help="most tasks sent, not awaited")
    ap.add_argument("--sample", type=int, default=10, help="early handles awaited at the end")
    ap.add_argument("--recall", type=int, default=0, help="first handles awaited at the end")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--bootstrap-servers", default=os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS"))
    ap.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    ap.add_argument("--log-dir", default=None, help="worker logs (default: a temp dir)")
    ap.add_argument("--json")
    args = ap.parse_args()
    log_dir = Path(args.log_dir or f"/tmp/st-scale-{uuid.uuid4().hex[:6]}")
    log_dir.mkdir(parents=True, exist_ok=True)
    with broker(args.bootstrap_servers, args.broker) as (bootstrap, broker_pid, where):
        print(f"broker: {where}; workers {args.workers} x concurrency {args.concurrency}")
        # no py-spy, no profile dir, not native, not idle, no extra worker options
        ctx = Ctx(bootstrap, broker_pid, args.workers, args.concurrency, log_dir, *NO_SPY, [])
        result = run(ctx, args.n, args.batch, args.window, args.sample, args.recall)
    report(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    resolved = result["resolved_in_run"] + result["sample_resolved"] + result["recall_resolved"]
    ok = resolved == args.n
    return 0 if ok and not result["wrong_results"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
