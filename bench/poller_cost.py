"""What a running delivery-poller thread costs a thread that only sends.

    python bench/poller_cost.py [--n 20000] [--rounds 6] [--bootstrap-servers HOST:PORT]

On an embedded broker (or --bootstrap-servers), with no workers: rounds of N ``noop.send(i)``
then ``app.flush()``, alternating "held" (another thread sits in ``poller.waiting()`` for the
whole round, so the poller thread runs and serves delivery reports: what every send paid while
the poller ran for good, before it ended when idle) and "idle" (nobody waits: the poller has
ended and the sender's own ``poll(0)`` serves the reports). Prints, per round, the send loop's
wall time and CPU per send of the whole process (sender, poller, librdkafka threads), then the
median of each kind.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import make_app  # noqa: E402
from run import broker  # noqa: E402

from streamtasks.kafka.poller import IDLE_EXIT, Poller  # noqa: E402


def _hold(poller: Poller, release: threading.Event) -> None:
    with poller.waiting():
        release.wait()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--bootstrap-servers", default=os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS"))
    args = ap.parse_args()

    def run(bootstrap: str) -> None:
        n = args.n
        app = make_app(f"poll{uuid.uuid4().hex[:8]}", bootstrap)
        app.apply_topics()
        noop = app.tasks["bench.noop"]
        noop.send(0).wait_sent(30)  # producer, listener snapshot and poller made, untimed
        results: dict[str, list[tuple[float, float]]] = {"held": [], "idle": []}
        for r in range(args.rounds):
            kind = "held" if r % 2 == 0 else "idle"
            release = threading.Event()
            holder = None
            if kind == "held":
                holder = threading.Thread(target=_hold, args=(app._poller_now(), release))
                holder.start()
            else:
                time.sleep(IDLE_EXIT + 0.3)  # the poller ends once nobody waited for IDLE_EXIT
                assert app._poller is None or not app._poller.running
            cpu0, t0 = time.process_time(), time.perf_counter()
            for i in range(n):
                noop.send(i)
            app.flush(60)
            wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
            release.set()
            if holder is not None:
                holder.join()
            results[kind].append((wall, cpu))
            print(
                f"round {r + 1} {kind}: {n / wall:,.0f} sends/s, "
                f"{1e6 * cpu / n:.1f} us CPU/send (process)"
            )
        for kind, rows in results.items():
            rates = [n / w for w, _ in rows]
            cpus = [1e6 * c / n for _, c in rows]
            print(
                f"{kind}: median {statistics.median(rates):,.0f} sends/s "
                f"({min(rates):,.0f}-{max(rates):,.0f}), "
                f"{statistics.median(cpus):.1f} us CPU/send ({min(cpus):.1f}-{max(cpus):.1f})"
            )
        app.close()

    with broker(args.bootstrap_servers) as (bootstrap, _pid, _what):
        run(bootstrap)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
