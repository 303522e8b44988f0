"""The raw confluent-kafka baseline worker: what streamtasks is measured against.

One process = one consumer-group member. For every input record: a no-op, then one result
record (same key) produced to the output topic with acks=all, idempotence and linger 5 ms; the
input offset is stored for the auto-commit only after its result is acknowledged, and only
over the unbroken run of acknowledged offsets of its partition (at-least-once, the same
guarantee the streamtasks worker gives). Single-threaded: consume(500, 0) (poll() to wait
when idle), produce, poll.

With ``--avro`` (the benchmark's row (a'), a reference, not the baseline) each input is a
streamtasks envelope and the worker does the serialization work the streamtasks contract
implies, straight with fastavro and nothing else: decode the envelope and its argument
record, call the no-op, encode the return value and a result record (single-object frames,
as streamtasks writes them), keyed by the task id. What that leaves between (a') and (b') is
the streamtasks worker's own bookkeeping, not Avro.

Prints JSON lines like the streamtasks worker's log ({"event": "partitions assigned",
"partitions": ["topic[0]", ...]}) so the benchmark can wait for the group the same way.

    python bench/raw_worker.py --bootstrap HOST:PORT --group G --in-topic T --out-topic R
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections import deque
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--group", required=True)
    ap.add_argument("--in-topic", required=True)
    ap.add_argument("--out-topic", required=True)
    ap.add_argument("--result-size", type=int, default=94)
    ap.add_argument("--avro", action="store_true", help="decode envelopes, encode results")
    ap.add_argument("--consumer-config", default="{}", help="JSON of extra consumer settings")
    args = ap.parse_args(argv)

    stopping = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    client_id = f"raw-{os.getpid()}"
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "client.id": client_id,
            "enable.auto.commit": True,
            "enable.auto.offset.store": False,
            "auto.commit.interval.ms": 1000,
            "auto.offset.reset": "earliest",
            **json.loads(args.consumer_config),
        }
    )
    producer = Producer(
        {
            "bootstrap.servers": args.bootstrap,
            "client.id": client_id + "-out",
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": 5,
            "partitioner": "murmur2_random",
        }
    )
    in_topic, out_topic = args.in_topic, args.out_topic
    result = b"r" * args.result_size
    work = _avro_work() if args.avro else None

    # Per input partition: offsets whose result is produced, in order, and which are acked.
    order: dict[int, deque[int]] = {}
    acked: dict[int, set[int]] = {}
    dirty: set[int] = set()
    in_flight = 0
    processed = 0

    def on_assign(_c: Consumer, parts: list[TopicPartition]) -> None:
        for p in parts:
            order[p.partition] = deque()
            acked[p.partition] = set()
        _emit("partitions assigned", partitions=[f"{p.topic}[{p.partition}]" for p in parts])

    def on_revoke(c: Consumer, parts: list[TopicPartition]) -> None:
        producer.flush(10)
        store()
        with contextlib.suppress(KafkaException):
            c.commit(asynchronous=False)
        for p in parts:
            order.pop(p.partition, None)
            acked.pop(p.partition, None)
            dirty.discard(p.partition)
        _emit("partitions revoked", partitions=[f"{p.topic}[{p.partition}]" for p in parts])

    def make_cb(partition: int, offset: int, key: bytes | None) -> Any:
        def cb(err: KafkaError | None, _msg: Any) -> None:
            nonlocal in_flight
            if err is not None:  # not acknowledged: produce it again (offset stays unstored)
                producer.produce(out_topic, value=result, key=key, on_delivery=cb)
                return
            in_flight -= 1
            done = acked.get(partition)
            if done is not None:
                done.add(offset)
                dirty.add(partition)

        return cb

    def store() -> None:
        if not dirty:
            return
        offsets = []
        for p in dirty:
            q, done = order.get(p), acked.get(p)
            if q is None or done is None:
                continue
            last = None
            while q and q[0] in done:
                last = q.popleft()
                done.discard(last)
            if last is not None:
                offsets.append(TopicPartition(in_topic, p, last + 1))
        dirty.clear()
        if offsets:
            with contextlib.suppress(KafkaException):
                consumer.store_offsets(offsets=offsets)

    consumer.subscribe([in_topic], on_assign=on_assign, on_revoke=on_revoke)
    try:
        while not stopping:
            # consume(n, timeout) blocks for the whole timeout unless n records are ready, so
            # take what is there without waiting, and block (in poll) only when idle.
            msgs = consumer.consume(500, 0)
            if not msgs:
                if in_flight:
                    producer.poll(0.001)  # waiting for acks: serve them as they come
                else:
                    one = consumer.poll(0.1)
                    msgs = [one] if one is not None else []
            for msg in msgs:
                if msg.error() is not None:
                    continue
                partition, offset, key = msg.partition(), msg.offset(), msg.key()
                q = order.get(partition) if partition is not None else None
                if q is None or partition is None or offset is None:
                    continue
                q.append(offset)
                # the task: a no-op (with --avro: decode it, encode its result)
                in_flight += 1
                processed += 1
                value = result
                if work is not None:
                    key, value = work(msg.value())
                cb = make_cb(partition, offset, key)
                while True:
                    try:
                        producer.produce(out_topic, value=value, key=key, on_delivery=cb)
                        break
                    except BufferError:
                        producer.poll(0.01)
            producer.poll(0)
            store()
        producer.flush(10)
        store()
        with contextlib.suppress(KafkaException):
            consumer.commit(asynchronous=False)
    finally:
        consumer.close()
    _emit("worker stopped", processed=processed)
    return 0


def _avro_work() -> Any:
    """The per-record Avro work of a streamtasks no-op task, with fastavro alone."""
    import io
    import time

    import fastavro
    from bench_app import make_app

    app = make_app("rawavro", "unused:9092")
    noop = app.tasks["bench.noop"]
    env_s, res_s = app.envelope_schema, app.result_schema
    args_s, value_s = noop.args_schema, noop.result_schema
    env_p, args_p, value_p, res_p = env_s.parsed, args_s.parsed, value_s.parsed, res_s.parsed
    value_head = b"\xc3\x01" + value_s.fingerprint
    res_head = b"\xc3\x01" + res_s.fingerprint
    worker_id = f"raw-{os.getpid()}"

    def work(frame: bytes) -> tuple[bytes, bytes]:
        env = fastavro.schemaless_reader(io.BytesIO(frame[10:]), env_p, None)
        call = fastavro.schemaless_reader(io.BytesIO(env["args"][10:]), args_p, None)
        started = time.time_ns() // 1_000_000
        out = io.BytesIO()
        out.write(value_head)
        fastavro.schemaless_writer(out, value_p, {"value": call["i"]})
        rec = {
            "task_id": env["id"],
            "task": env["task"],
            "status": "SUCCESS",
            "attempts": env["attempt"],
            "worker_id": worker_id,
            "created_at": env["created_at"],
            "started_at": started,
            "finished_at": time.time_ns() // 1_000_000,
            "value": out.getvalue(),
            "error": None,
        }
        buf = io.BytesIO()
        buf.write(res_head)
        fastavro.schemaless_writer(buf, res_p, rec)
        return env["id"].encode(), buf.getvalue()

    return work


if __name__ == "__main__":
    raise SystemExit(main())
