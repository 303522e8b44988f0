"""Per-task worker CPU of optional features, measured on a burst drain in one process.

    python bench/drain_overhead.py [--variants off,events,metrics] [--pairs 5]
    python bench/drain_overhead.py --variants off,c1,pp256   (1 task thread; per-partition 256)

For each variant, one ``Worker(app, concurrency=8).run(burst=True)`` in a fresh process drains
10,000 and then 40,000 pre-produced ``bench.noop`` envelopes on fresh topics; the variant's
figure is the process CPU of the 40,000 drain minus that of the 10,000 drain, per extra task
(the group join and the end of the burst cancel out, no client shares the machine's time
with the worker, and nothing an earlier run left in a process weighs on the next). Each
round starts a fresh embedded Tansu (it slows as its in-memory store fills) and runs the
variants in reverse order every other round (off, events; events, off; ...), so neither the
store nor a change in the machine's load favours one. Median (min-max) of ``--pairs`` rounds
and the change against the first variant are printed. Each 40,000 drain also prints the CPU
of each librdkafka broker thread started during it (``/proc/self/task``, by thread id): a
broker thread spinning shows there as one far above the others (~0.2 s).
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import structlog

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import make_app  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from run import _envelopes, broker, produce_all, producer_config  # noqa: E402

from streamtasks.worker.worker import Worker  # noqa: E402

SMALL, LARGE = 10_000, 40_000
TICK = os.sysconf("SC_CLK_TCK")


def _thread_cpu() -> dict[int, tuple[str, float]]:
    """``tid -> (name, CPU seconds)`` of this process's threads."""
    out: dict[int, tuple[str, float]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except OSError:  # the thread ended meanwhile
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        out[int(tid)] = (name, (int(fields[11]) + int(fields[12])) / TICK)
    return out


class ThreadSampler:
    """The last CPU reading of every thread seen during a run (threads end with the run)."""

    def __init__(self) -> None:
        self.base = _thread_cpu()
        self.last: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.last.update(_thread_cpu())
            time.sleep(0.05)

    def broker_threads(self) -> list[float]:
        """CPU seconds of each librdkafka broker thread started during the run, in order."""
        self._stop.set()
        self._thread.join()
        self.last.update(_thread_cpu())
        return [
            round(cpu - self.base.get(tid, (name, 0.0))[1], 2)
            for tid, (name, cpu) in sorted(self.last.items())
            if name.startswith("rdk:broker")
            and not name.startswith("rdk:broker-")
            and tid not in self.base
        ]


def _option(variant: str, prefix: str) -> int | None:
    """``c4`` in a variant (``c4``, ``events+c4``) sets the task threads, ``w512`` the
    worker's ``max_in_flight``, ``pp100`` its ``max_in_flight_per_partition``."""
    for part in variant.split("+"):
        if part.startswith(prefix) and part[len(prefix) :].isdigit():
            return int(part[len(prefix) :])
    return None


def drain(bootstrap: str, records: list[tuple[str, bytes, object]], variant: str) -> float:
    """Process CPU seconds of one burst drain of ``records`` with ``variant``'s options."""
    app = make_app(f"drain{uuid.uuid4().hex[:8]}", bootstrap)
    app.apply_topics()
    producer = Producer(producer_config(bootstrap))
    produce_all(producer, app.tasks["bench.noop"].topic, records)
    producer.flush(60)
    worker = Worker(
        app,
        concurrency=_option(variant, "c") or 8,
        max_in_flight=_option(variant, "w"),
        max_in_flight_per_partition=_option(variant, "pp"),
        events="events" in variant,
        metrics="metrics" in variant,
        heartbeat_interval=60,
    )
    if "gcfreeze" in variant:
        import gc

        gc.freeze()
    if "gcthr" in variant:
        import gc

        gc.set_threshold(20_000, 50, 100)
    gc_time = [0.0, 0.0, 0.0]
    gc_count = [0, 0, 0]
    gc_start = [0.0]
    if "gctime" in variant:
        import gc

        def _cb(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                gc_start[0] = time.perf_counter()
            else:
                gc_time[info["generation"]] += time.perf_counter() - gc_start[0]
                gc_count[info["generation"]] += 1

        gc.callbacks.append(_cb)
    sampler = ThreadSampler() if len(records) == LARGE else None  # measures this process
    before = time.process_time()
    stats = worker.run(install_signal_handlers=False, burst=True)
    used = time.process_time() - before
    app.close()
    if stats.succeeded != len(records):
        raise SystemExit(f"{variant}: {stats.succeeded} of {len(records)} tasks succeeded")
    if "gctime" in variant:
        print(f"    gc: {gc_count} collections, {[round(t, 3) for t in gc_time]} s", flush=True)
    if sampler is not None:
        print(f"    librdkafka broker threads (s): {sampler.broker_threads()}", flush=True)
    return used


def drain_in_child(bootstrap: str, n: int, variant: str) -> float:
    """:func:`drain` in a fresh process (what a worker process is): nothing a run leaves
    behind in a process (threads, clients) can weigh on the next one."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", f"{bootstrap},{n},{variant}"],
        check=True,
        capture_output=True,
        text=True,
    )
    lines = out.stdout.strip().splitlines()
    for line in lines[:-1]:
        print(line, flush=True)
    return float(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", default="off,events", help="off, events, metrics, ...")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--child", help=argparse.SUPPRESS)  # BOOTSTRAP,N,VARIANT: one drain
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    if args.child:
        bootstrap, n, variant = args.child.split(",")
        print(drain(bootstrap, _envelopes(int(n)), variant))
        return
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    runs: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.pairs):
        # a fresh broker each round (Tansu slows as its in-memory store fills), and the
        # order reversed every other round, so neither favours a variant
        order = variants if i % 2 == 0 else variants[::-1]
        with broker(None, "tansu") as (bootstrap, _pid, where):
            print(f"round {i + 1}: {where}; load {os.getloadavg()[0]:.1f}", flush=True)
            for variant in order:
                small = drain_in_child(bootstrap, SMALL, variant)
                large = drain_in_child(bootstrap, LARGE, variant)
                us = 1e6 * (large - small) / (LARGE - SMALL)
                runs[variant].append(us)
                load = os.getloadavg()[0]
                print(f"  round {i + 1} {variant}: {us:.1f} us/task (load {load:.1f})", flush=True)
    base = statistics.median(runs[variants[0]])
    for variant, values in runs.items():
        median = statistics.median(values)
        print(
            f"{variant:>16}: {median:.1f} us/task ({min(values):.1f}-{max(values):.1f}), "
            f"{100 * (median / base - 1):+.1f} % vs {variants[0]}"
        )


if __name__ == "__main__":
    main()
