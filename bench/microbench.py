"""Per-task CPU of the Python steps of a no-op task, without Kafka (single thread, timeit).

    python bench/microbench.py

Shows how the ~20-30 us a task costs the worker (and ~19 us ``send()`` costs the client)
split into steps, so library changes can be aimed at the big ones.
"""

from __future__ import annotations

import io
import sys
import timeit
import uuid
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import fastavro  # noqa: E402
from bench_app import make_app  # noqa: E402

from streamtasks.wire.envelope import Envelope, ResultRecord, TaskStatus, now_ms  # noqa: E402


def us(stmt: object, number: int = 20000) -> float:
    return 1e6 * min(timeit.repeat(stmt, number=number, repeat=3)) / number  # type: ignore


def main() -> int:
    app = make_app("micro", "unused:9092")
    noop = app.tasks["bench.noop"]
    codec = app.codec
    tid = uuid.uuid4().hex
    args = noop.encode_args((12345,), {})
    env = Envelope(id=tid, task=noop.name, queue=noop.queue, args=args, root_id=tid)
    frame = codec.encode(app.envelope_schema, env.to_avro())
    _, env_raw = codec.decode(frame, expect=app.envelope_schema)
    value = noop.encode_result(12345)
    rec = ResultRecord(
        task_id=tid,
        task=noop.name,
        status=TaskStatus.SUCCESS,
        attempts=1,
        created_at=1,
        worker_id="host-1-abc",
        started_at=2,
        finished_at=3,
        value=value,
    )
    rec_avro = rec.to_avro()
    rec_frame = codec.encode(app.result_schema, rec_avro)
    parsed = app.envelope_schema.parsed
    env_avro = env.to_avro()

    rows = [
        ("client", "uuid4().hex", lambda: uuid.uuid4().hex),
        ("client", "Task.encode_args", lambda: noop.encode_args((12345,), {})),
        (
            "client",
            "Envelope(...)",
            lambda: Envelope(id=tid, task=noop.name, queue=noop.queue, args=args, root_id=tid),
        ),
        ("client", "Envelope.to_avro", env.to_avro),
        ("client", "Codec.encode(envelope)", lambda: codec.encode(app.envelope_schema, env_avro)),
        (
            "client",
            "  (fastavro.schemaless_writer alone)",
            lambda: fastavro.schemaless_writer(io.BytesIO(), parsed, env_avro),
        ),
        ("client", "Task.send without Kafka (sum of the above)", None),
        (
            "worker",
            "Codec.decode(envelope)",
            lambda: codec.decode(frame, expect=app.envelope_schema),
        ),
        ("worker", "Envelope.from_avro", lambda: Envelope.from_avro(env_raw)),
        ("worker", "Task.decode_args", lambda: noop.decode_args(args)),
        ("worker", "Task.encode_result", lambda: noop.encode_result(12345)),
        (
            "worker",
            "ResultRecord(...) + to_avro",
            lambda: ResultRecord(
                task_id=tid,
                task=noop.name,
                status=TaskStatus.SUCCESS,
                attempts=1,
                created_at=1,
                worker_id="host-1-abc",
                started_at=2,
                finished_at=now_ms(),
                value=value,
            ).to_avro(),
        ),
        ("worker", "Codec.encode(result)", lambda: codec.encode(app.result_schema, rec_avro)),
        ("worker", "Python steps of one task (sum)", None),
        (
            "client",
            "listener: Codec.decode(result) + from_avro",
            lambda: ResultRecord.from_avro(codec.decode(rec_frame, expect=app.result_schema)[1]),
        ),
        ("client", "AsyncResult.get: Task.decode_result", lambda: noop.decode_result(value)),
    ]
    total = {"client": 0.0, "worker": 0.0}
    print(f"{'where':<8}{'step':<46}{'us':>7}")
    for where, name, fn in rows:
        if fn is None:
            print(f"{where:<8}{name:<46}{total[where]:>7.1f}")
            continue
        t = us(fn)
        if not name.startswith("  ") and not name.startswith(("listener", "AsyncResult")):
            total[where] += t
        print(f"{where:<8}{name:<46}{t:>7.1f}")
    print(f"\nenvelope {len(frame)} B, result record {len(rec_frame)} B")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
