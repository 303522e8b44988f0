"""Look-ups of evicted handles in one process, no workers: what a scan costs and leaves behind.

    python bench/recall.py [--n 1000000] [--lookups 5] [--in-order 0]
                           [--broker tansu|kafka | --bootstrap-servers HOST:PORT]

Writes N result records (``bench.noop``, SUCCESS) to a fresh results topic as a worker would,
from a client whose listener follows all N (default ``result_capacity``, 200,000, so all but
the last 200,000 are evicted), waits until the listener has read the last one, then waits on
``--lookups`` ids spread over the first half (each its own look-up) and on the first
``--in-order`` ids in order. Printed: the time of each phase, the scans, and the client's
RSS (and peak) after writing and after the look-ups.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import make_app  # noqa: E402
from run import broker, proc_mem  # noqa: E402

from streamtasks.wire.envelope import ResultRecord, TaskStatus  # noqa: E402
from streamtasks.wire.topics import results_topic  # noqa: E402


def rss() -> str:
    m = proc_mem(os.getpid())
    return f"{m.get('VmRSS', 0):.0f} MiB (peak {m.get('VmHWM', 0):.0f})"


def write_results(app: Any, ids: list[str]) -> None:
    noop = app.tasks["bench.noop"]
    topic = results_topic(app.settings.namespace)
    producer, codec, schema = app.producer, app.codec, app.result_schema
    now = int(time.time() * 1000)
    for i, task_id in enumerate(ids):
        rec = ResultRecord(
            task_id=task_id,
            task="bench.noop",
            status=TaskStatus.SUCCESS,
            attempts=1,
            created_at=now,
            worker_id="bench-worker-1",
            started_at=now,
            finished_at=now,
            value=noop.encode_result(i),
        )
        value = codec.encode(schema, rec.to_avro())
        while True:
            try:
                producer.produce(topic, key=task_id.encode(), value=value)
                break
            except BufferError:
                producer.poll(0.1)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--lookups", type=int, default=5)
    ap.add_argument("--in-order", type=int, default=0)
    ap.add_argument("--bootstrap-servers", default=os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS"))
    ap.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    args = ap.parse_args()
    with broker(args.bootstrap_servers, args.broker) as (bootstrap, _pid, where):
        app = make_app(f"benchrecall{uuid.uuid4().hex[:8]}", bootstrap)
        try:
            app.apply_topics()
            app.connect()
            listener = app.results_listener()
            ids = [uuid.uuid4().hex for _ in range(args.n)]
            t0 = time.perf_counter()
            for start in range(0, args.n, 10_000):
                chunk = ids[start : start + 10_000]
                listener.expect_many(chunk)
                write_results(app, chunk)
            app.flush(120)
            while listener.peek(ids[-1]) is None:
                listener.wait(ids[-1], 1.0)
            took = time.perf_counter() - t0
            print(f"{where}: {args.n:,} results written and read in {took:.1f} s")
            print(f"client RSS after: {rss()}")
            n = args.n
            spread = [ids[k * (n // 2) // args.lookups] for k in range(args.lookups)]
            t1 = time.perf_counter()
            for task_id in spread:
                assert listener.wait(task_id, 300) is not None
            print(
                f"{len(spread)} spread look-ups: {time.perf_counter() - t1:.1f} s, "
                f"{listener.scans} scans; client RSS after: {rss()}"
            )
            scans = listener.scans
            t2 = time.perf_counter()
            for task_id in ids[: args.in_order]:
                assert listener.wait(task_id, 300) is not None
            if args.in_order:
                print(
                    f"first {args.in_order:,} in order: {time.perf_counter() - t2:.1f} s, "
                    f"{listener.scans - scans} scans; client RSS after: {rss()}"
                )
        finally:
            app.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
