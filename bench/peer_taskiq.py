"""Peer row: taskiq-aio-kafka on the same broker, end to end, and latency at a paced rate.

    python bench/peer_taskiq.py [--n 20000] [--workers 2] [--repeats 3] [--rate 200]
                                [--latency-n 2000] [--broker tansu|kafka]
                                [--bootstrap-servers HOST:PORT] [--json out.json]

Starts ``--workers`` processes of ``taskiq worker taskiq_app:broker`` (one each, default
``--max-async-tasks``) on a fresh 6-partition topic, waits until records from every worker
process came back, then: N ``await noop.kiq(i, t)`` sent concurrently in chunks of 1,000
(``kiq`` awaits each send's acknowledgement, acks=1); **tasks/s = N / (first send → last done
record read)**, median of ``--repeats`` with min-max; then once the same N pre-encoded
(taskiq's JSON) by a bare confluent-kafka producer, like run.py's (b'): the workers alone.
Latency: ``--latency-n`` tasks paced at ``--rate``/s, enqueue→done = the done record's time
minus the send time (one clock).

What it guarantees (see taskiq_app.py): offsets auto-committed every 5 s regardless of the
task (at most once on a crash, not at least once), no result a client can await, acks=1 and
no idempotence on the send. streamtasks' rows carry acks=all + idempotent sends, offsets
committed only after the result is acknowledged, and a result record per task that a client
awaits with ``get()``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402
from run import PARTITIONS, CountingReader, broker, pct, produce_all  # noqa: E402

CHUNK = 1000


class Done:
    """What the done records say: worker pids seen, enqueue->done latencies (ms)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pids: set[int] = set()
        self.latency_ms: list[float] = []

    def __call__(self, value: bytes | None) -> object:
        pid, sent, done = (int(x) for x in (value or b"0 0 0").split())
        with self.lock:
            self.pids.add(pid)
            self.latency_ms.append((done - sent) / 1e6)
        return None


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


async def _send(n: int, rate: float | None) -> None:
    import taskiq_app

    if rate is None:
        for start in range(0, n, CHUNK):
            await asyncio.gather(
                *(
                    taskiq_app.noop.kiq(i, time.time_ns())
                    for i in range(start, min(n, start + CHUNK))
                )
            )
    else:
        t0 = time.perf_counter()
        for i in range(n):
            delay = t0 + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await taskiq_app.noop.kiq(i, time.time_ns())


async def _measure(args: argparse.Namespace, reader: CountingReader, done: Done) -> dict[str, Any]:
    """Warm up until every worker answered, then the timed runs and the latency part (one
    broker client for all: taskiq-aio-kafka's admin client cannot start twice)."""
    import taskiq_app

    out: dict[str, Any] = {}
    wait = asyncio.to_thread
    await taskiq_app.broker.startup()
    try:
        sent = 0
        deadline = time.monotonic() + 90
        while len(done.pids) < args.workers and time.monotonic() < deadline:
            await _send(200, None)
            sent += 200
            await wait(reader.wait_for, sent, 60)
        if len(done.pids) < args.workers:
            raise RuntimeError(f"only {len(done.pids)} taskiq workers answered in 90 s")
        runs = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            await _send(args.n, None)
            t_sent = time.perf_counter()
            sent += args.n
            t_end = await wait(reader.wait_for, sent, 300)
            runs.append(
                {"tasks_per_s": args.n / (t_end - t0), "send_s": t_sent - t0, "load": load()}
            )
        rates = sorted(r["tasks_per_s"] for r in runs)
        out["throughput"] = {
            "n": args.n,
            "tasks_per_s": statistics.median(rates),
            "min": rates[0],
            "max": rates[-1],
            "runs": runs,
        }
        # workers only: the same tasks pre-encoded (taskiq's own JSON) by a bare producer
        values = [
            taskiq_app.broker.formatter.dumps(
                taskiq_app.noop.kicker()._prepare_message(i, time.time_ns())
            ).message
            for i in range(args.n)
        ]
        bare = Producer({"bootstrap.servers": args.bootstrap, "linger.ms": 5})
        t0 = time.perf_counter()
        produce_all(bare, taskiq_app.TOPIC, ((None, v, None) for v in values))
        bare.flush(60)
        sent += args.n
        t_end = await wait(reader.wait_for, sent, 300)
        out["workers_only"] = {"n": args.n, "tasks_per_s": args.n / (t_end - t0), "load": load()}
        with done.lock:
            done.latency_ms.clear()
        await _send(args.latency_n, args.rate)
        sent += args.latency_n
        await wait(reader.wait_for, sent, 120)
        with done.lock:
            lat = list(done.latency_ms)
        out["latency"] = {
            "rate": args.rate,
            "n": len(lat),
            "p50_ms": pct(lat, 50),
            "p99_ms": pct(lat, 99),
            "load": load(),
        }
        return out
    finally:
        await taskiq_app.broker.shutdown()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--latency-n", type=int, default=2000)
    ap.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    ap.add_argument("--bootstrap-servers", default=os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS"))
    ap.add_argument("--json")
    args = ap.parse_args()
    out: dict[str, Any] = {}
    with broker(args.bootstrap_servers, args.broker) as (bootstrap, _pid, where):
        topic = f"tq{uuid.uuid4().hex[:8]}"
        admin = AdminClient({"bootstrap.servers": bootstrap})
        for f in admin.create_topics(
            [NewTopic(topic, PARTITIONS, 1), NewTopic(topic + ".done", PARTITIONS, 1)]
        ).values():
            f.result(30)
        env = {
            **os.environ,
            "TQ_BOOTSTRAP": bootstrap,
            "TQ_TOPIC": topic,
            "TQ_GROUP": f"{topic}-workers",
            "PYTHONPATH": str(BENCH_DIR),
        }
        os.environ.update({k: env[k] for k in ("TQ_BOOTSTRAP", "TQ_TOPIC", "TQ_GROUP")})
        cmd = [
            str(Path(sys.executable).parent / "taskiq"),
            "worker",
            "taskiq_app:broker",
            "--workers",
            str(args.workers),
            "--log-level",
            "WARNING",
        ]
        log = open(f"/tmp/peer-taskiq-{topic}.log", "w")  # noqa: SIM115
        workers = subprocess.Popen(cmd, env=env, cwd=BENCH_DIR, stdout=log, stderr=log)
        done = Done()
        reader = CountingReader(bootstrap, topic + ".done", PARTITIONS, done)
        try:
            print(f"broker: {where}; taskiq workers: {args.workers}; load {load()}")
            args.bootstrap = bootstrap
            out = asyncio.run(_measure(args, reader, done))
        finally:
            reader.close()
            workers.terminate()
            try:
                workers.wait(15)
            except subprocess.TimeoutExpired:
                workers.kill()
            log.close()
    t = out["throughput"]
    print(
        f"taskiq-aio-kafka  {t['tasks_per_s']:,.0f} tasks/s at N={t['n']} (min {t['min']:,.0f}, "
        f"max {t['max']:,.0f}); loads {[r['load'] for r in t['runs']]}"
    )
    wo = out["workers_only"]
    print(
        f"taskiq workers only (pre-encoded, bare producer)  {wo['tasks_per_s']:,.0f} tasks/s "
        f"(1 run; load {wo['load']})"
    )
    lt = out["latency"]
    print(
        f"latency @{lt['rate']:.0f}/s  enqueue->done p50 {lt['p50_ms']:.1f} ms, p99 "
        f"{lt['p99_ms']:.1f} ms ({lt['n']} tasks; load {lt['load']})"
    )
    print("guarantees: auto-commit every 5 s (at most once), no result backend, acks=1")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
