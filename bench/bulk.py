"""Bulk enqueue: ``Task.send_many`` against ``send()`` in a loop and the raw floor.

    python bench/bulk.py [--n 100000] [--repeats 3] [--bootstrap-servers HOST:PORT]
                         [--broker tansu|kafka] [--json out.json]

No workers: every row measures enqueueing only, N ``bench.noop`` tasks from one process,
**first record handed over → ``flush()`` returned** (every record acknowledged by the broker):

* **raw + Avro** — the floor: fastavro encodes each envelope (the same bytes ``send()`` writes,
  as in run.py's row a'e) and a bare confluent-kafka producer (acks=all, idempotent, linger
  5 ms) produces it; no validation, no handles, nothing tracked.
* **send() loop** — ``[noop.send(i) for i in range(N)]``, then ``app.flush()``.
* **send_many** — ``noop.send_many([(i,) for i in range(N)])``, then ``app.flush()``.

Each is repeated ``--repeats`` times on the same topics; median, min and max are printed,
with this process's CPU time per task (all its threads: Python and librdkafka) and the load
average, since the machine is shared. Also: the first ``send()``'s wait for its broker
acknowledgement on a fresh app, with and without ``app.connect()`` before it.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import make_app  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from run import _raw_avro_client, broker, produce_all, producer_config  # noqa: E402


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn: Callable[[], None], n: int) -> dict[str, float]:
    cpu0, t0 = time.process_time(), time.perf_counter()
    fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"tasks_per_s": n / wall, "cpu_us_per_task": 1e6 * cpu / n}


def summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    rates = sorted(r["tasks_per_s"] for r in runs)
    cpus = sorted(r["cpu_us_per_task"] for r in runs)
    return {
        "tasks_per_s": statistics.median(rates),
        "min": rates[0],
        "max": rates[-1],
        "cpu_us_per_task": statistics.median(cpus),
        "runs": runs,
    }


def first_send_ms(bootstrap: str, *, connect: bool) -> float:
    """A fresh app's first ``send()`` until the broker acknowledged it, in ms."""
    app = make_app(f"bulkfirst{uuid.uuid4().hex[:8]}", bootstrap)
    app.apply_topics()
    try:
        if connect:
            app.connect()
        t0 = time.perf_counter()
        app.tasks["bench.noop"].send(0).wait_delivery(30)
        return 1000 * (time.perf_counter() - t0)
    finally:
        app.close()


def run(bootstrap: str, n: int, repeats: int) -> dict[str, Any]:
    app = make_app(f"bulk{uuid.uuid4().hex[:8]}", bootstrap)
    app.apply_topics()
    noop = app.tasks["bench.noop"]
    topic = noop.topic
    app.connect()
    noop.send_many([(i,) for i in range(100)])  # warm-up: producer, listener, metadata
    app.flush(30)
    raw = Producer(producer_config(bootstrap))
    stream, _decode = _raw_avro_client()

    def raw_avro() -> None:
        produce_all(raw, topic, itertools.islice(stream, n))
        raw.flush(60)

    def send_loop() -> None:
        for i in range(n):
            noop.send(i)
        assert app.flush(60) == 0

    def send_many() -> None:
        noop.send_many([(i,) for i in range(n)])
        assert app.flush(60) == 0

    rows: dict[str, Any] = {}
    for name, fn in (("raw_avro", raw_avro), ("send_loop", send_loop), ("send_many", send_many)):
        runs = []
        for _ in range(repeats):
            runs.append({**timed(fn, n), "load": load()})  # type: ignore[dict-item]
        rows[name] = summary(runs)
    rows["first_send_ms"] = {
        "without_connect": [first_send_ms(bootstrap, connect=False) for _ in range(3)],
        "after_connect": [first_send_ms(bootstrap, connect=True) for _ in range(3)],
    }
    app.close()
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--bootstrap-servers", default=os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS"))
    ap.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    ap.add_argument("--json")
    args = ap.parse_args()
    with broker(args.bootstrap_servers, args.broker) as (bootstrap, _pid, where):
        print(f"broker: {where}; n={args.n}; load before: {load()}")
        rows = run(bootstrap, args.n, args.repeats)
    floor = rows["raw_avro"]["tasks_per_s"]
    for name in ("raw_avro", "send_loop", "send_many"):
        r = rows[name]
        print(
            f"{name:<10} {r['tasks_per_s']:>9,.0f} tasks/s (min {r['min']:,.0f}, max "
            f"{r['max']:,.0f}; {r['tasks_per_s'] / floor:.2f} x raw+Avro), CPU "
            f"{r['cpu_us_per_task']:.1f} us/task; load {[x['load'] for x in r['runs']]}"
        )
    fs = rows["first_send_ms"]
    print(
        "first send() acknowledged after (ms): without connect() "
        + ", ".join(f"{x:.0f}" for x in fs["without_connect"])
        + "; after connect() "
        + ", ".join(f"{x:.0f}" for x in fs["after_connect"])
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
