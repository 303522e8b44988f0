"""Diagnostics: the cost of the client side, ``Task.send`` and the result listener.

    python bench/profile_client.py [--n 20000] [--cprofile out.pstats]

On an embedded broker (or --bootstrap-servers), with no workers: times N ``noop.send(i)``
calls (plain, then under cProfile), the same N records produced with a bare confluent-kafka
producer for comparison, and the cost of the result listener's decode path
(``Codec.decode`` + ``ResultRecord.from_avro``) on N result records, without Kafka.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import time
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import make_app  # noqa: E402
from confluent_kafka import Producer  # noqa: E402

from streamtasks.wire.envelope import ResultRecord, TaskStatus  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--bootstrap-servers", default=os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS"))
    ap.add_argument("--cprofile", help="write the send loop's cProfile stats here")
    args = ap.parse_args()

    def run(bootstrap: str) -> None:
        n = args.n
        app = make_app(f"prof{uuid.uuid4().hex[:8]}", bootstrap)
        app.apply_topics()
        noop = app.tasks["bench.noop"]
        noop.send(0)  # listener snapshot + producer creation, outside the timing
        app.flush()

        t0 = time.perf_counter()
        for i in range(n):
            noop.send(i)
        t1 = time.perf_counter()
        app.flush()
        print(
            f"streamtasks send(): {1e6 * (t1 - t0) / n:.1f} us/call "
            f"({n / (t1 - t0):,.0f}/s), flush {time.perf_counter() - t1:.2f}s"
        )

        prof = cProfile.Profile()
        prof.enable()
        for i in range(n):
            noop.send(i)
        prof.disable()
        app.flush()

        p = Producer(
            {
                "bootstrap.servers": bootstrap,
                "acks": "all",
                "enable.idempotence": True,
                "linger.ms": 5,
                "partitioner": "murmur2_random",
            }
        )
        topic = noop.topic
        payload = b"x" * 123
        t0 = time.perf_counter()
        for _ in range(n):
            p.produce(topic, value=payload, key=uuid.uuid4().hex)
            p.poll(0)
        t1 = time.perf_counter()
        p.flush()
        print(f"raw produce() + uuid4 + poll(0): {1e6 * (t1 - t0) / n:.1f} us/call")

        # the listener's per-result work, without Kafka
        rec = ResultRecord(
            task_id=uuid.uuid4().hex,
            task=noop.name,
            status=TaskStatus.SUCCESS,
            attempts=1,
            created_at=1,
            worker_id="w",
            started_at=2,
            finished_at=3,
            value=noop.encode_result(7),
        )
        frame = app.codec.encode(app.result_schema, rec.to_avro())
        t0 = time.perf_counter()
        for _ in range(n):
            _, raw = app.codec.decode(frame, expect=app.result_schema)
            ResultRecord.from_avro(raw)
        t1 = time.perf_counter()
        print(f"listener decode + ResultRecord.from_avro: {1e6 * (t1 - t0) / n:.1f} us/result")
        t0 = time.perf_counter()
        for _ in range(n):
            noop.decode_result(rec.value)  # type: ignore[arg-type]
        t1 = time.perf_counter()
        print(f"AsyncResult value decode (Task.decode_result): {1e6 * (t1 - t0) / n:.1f} us/result")
        app.close()

        stats = pstats.Stats(prof)
        if args.cprofile:
            stats.dump_stats(args.cprofile)
        stats.sort_stats("tottime").print_stats(25)

    if args.bootstrap_servers:
        run(args.bootstrap_servers)
    else:
        from streamtasks.dev.broker import EmbeddedBroker

        with EmbeddedBroker() as b:
            run(b.bootstrap_servers)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
