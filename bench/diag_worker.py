"""Diagnostics: one streamtasks Worker in-process with its consumer/producer calls timed.

    python bench/diag_worker.py [--n 5000] [--concurrency 8] [--events] [--cprofile out.pstats]

Starts an embedded broker (or uses --bootstrap-servers), runs ``Worker(app).run()`` in a
thread of this process with the consumer's consume/pause/resume and the producer's poll
wrapped to record how long each call took and how much it returned, sends N no-op tasks,
waits for every result and prints a summary of the poll loop: how many loop iterations, how
long consume() blocked, the batch sizes, how often partitions were paused/resumed. With
--cprofile, the worker's threads are profiled (cProfile, all worker threads merged).

It shares the GIL with the client (sender + result listener), so its throughput is not the
benchmark's; it is for seeing *why* the loop waits.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import make_app  # noqa: E402
from confluent_kafka import Consumer, Producer  # noqa: E402

import streamtasks.worker.worker as worker_mod  # noqa: E402
from streamtasks.kafka import clients  # noqa: E402
from streamtasks.worker.pools.threads import ThreadPool  # noqa: E402

EVENTS: list[tuple[float, str, float, int]] = []  # (t, what, seconds blocked, count)


class TimedConsumer(Consumer):
    def consume(self, num_messages: int = 1, timeout: float = -1) -> Any:
        t0 = time.perf_counter()
        msgs = super().consume(num_messages, timeout)
        EVENTS.append((t0, f"consume(timeout={timeout})", time.perf_counter() - t0, len(msgs)))
        return msgs

    def pause(self, partitions: Any) -> Any:
        EVENTS.append((time.perf_counter(), "pause", 0.0, len(partitions)))
        return super().pause(partitions)

    def resume(self, partitions: Any) -> Any:
        EVENTS.append((time.perf_counter(), "resume", 0.0, len(partitions)))
        return super().resume(partitions)


class TimedProducer(Producer):
    def poll(self, timeout: float = -1) -> Any:
        t0 = time.perf_counter()
        n = super().poll(timeout)
        EVENTS.append((t0, "producer.poll", time.perf_counter() - t0, n))
        return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--max-in-flight", type=int, default=None)
    ap.add_argument("--bootstrap-servers", default=os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS"))
    ap.add_argument("--cprofile", help="write worker-thread cProfile stats here")
    ap.add_argument("--events", action="store_true", help="per-task lifecycle events on")
    ap.add_argument("--timeline", type=int, default=0, help="print the first K loop events")
    args = ap.parse_args()

    orig_consumer, orig_producer = clients.make_consumer, clients.make_producer

    def run(bootstrap: str) -> None:
        ns = f"diag{uuid.uuid4().hex[:8]}"
        worker_app = make_app(ns, bootstrap)
        client_app = make_app(ns, bootstrap)
        client_app.apply_topics()
        # the worker is built with the timed clients, the client app with the plain ones
        clients.make_consumer = lambda cfg: TimedConsumer(cfg)
        clients.make_producer = lambda cfg: TimedProducer(cfg)
        w = worker_mod.Worker(
            worker_app,
            concurrency=args.concurrency,
            max_in_flight=args.max_in_flight,
            events=args.events,
        )
        profiles: list[cProfile.Profile] = []  # one per worker thread (cProfile is per thread)

        def profiled(fn: Any) -> Any:
            def wrapper(*a: Any, **kw: Any) -> Any:
                prof = cProfile.Profile()
                profiles.append(prof)
                prof.enable()
                try:
                    return fn(*a, **kw)
                finally:
                    prof.disable()

            return wrapper

        if args.cprofile:
            ThreadPool._run = profiled(ThreadPool._run)  # type: ignore
        run_worker = lambda: w.run(install_signal_handlers=False)  # noqa: E731
        th = threading.Thread(
            target=profiled(run_worker) if args.cprofile else run_worker, daemon=True
        )
        th.start()
        if not w.ready.wait(60):
            raise RuntimeError("worker did not get partitions")
        time.sleep(1.0)  # let the group settle
        clients.make_consumer, clients.make_producer = orig_consumer, orig_producer
        noop = client_app.tasks["bench.noop"]
        for h in [noop.send(i) for i in range(60)]:
            h.get(timeout=30)
        EVENTS.clear()
        t0 = time.perf_counter()
        handles = [noop.send(i) for i in range(args.n)]
        client_app.flush()
        t_sent = time.perf_counter()
        for h in handles:
            h.get(timeout=120)
        t_done = time.perf_counter()
        events = [e for e in EVENTS if t0 <= e[0] <= t_done]
        w.stop()
        th.join(30)
        client_app.close()
        if profiles:
            stats = pstats.Stats(profiles[0])
            for prof in profiles[1:]:
                stats.add(prof)
            stats.dump_stats(args.cprofile)
        print(
            f"{args.n} tasks: sent in {t_sent - t0:.2f}s, all results after {t_done - t0:.2f}s "
            f"= {args.n / (t_done - t0):,.0f} tasks/s (single in-process worker)"
        )
        span = t_done - t0
        kinds: Counter[str] = Counter()
        blocked: dict[str, float] = {}
        got: Counter[str] = Counter()
        for _t, what, dt, n in events:
            kinds[what] += 1
            blocked[what] = blocked.get(what, 0.0) + dt
            got[what] += n
        print(f"{'call':<28}{'calls':>8}{'blocked s':>11}{'% of span':>11}{'items':>9}")
        for what in sorted(kinds):
            print(
                f"{what:<28}{kinds[what]:>8}{blocked[what]:>11.2f}"
                f"{100 * blocked[what] / span:>10.0f}%{got[what]:>9}"
            )
        sizes = [n for _t, what, _d, n in events if what.startswith("consume")]
        nonempty = [s for s in sizes if s]
        if nonempty:
            print(
                f"consume batches: {len(nonempty)} non-empty of {len(sizes)}, "
                f"mean {sum(nonempty) / len(nonempty):.0f}, max {max(nonempty)}"
            )
        for t, what, dt, n in events[: args.timeline]:
            print(f"  {1000 * (t - t0):9.1f} ms  {what:<26} {1000 * dt:7.1f} ms  {n}")

    if args.bootstrap_servers:
        run(args.bootstrap_servers)
    else:
        from streamtasks.dev.broker import EmbeddedBroker

        with EmbeddedBroker() as b:
            run(b.bootstrap_servers)
    if args.cprofile:
        pstats.Stats(args.cprofile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
