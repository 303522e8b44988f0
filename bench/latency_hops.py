"""Where the milliseconds of one task go at a low rate: enqueue→done split per hop.

    python bench/latency_hops.py [--broker tansu|kafka] [--n 1000] [--rate 200] [--runs 1]

Starts a broker (as ``bench/run.py`` does), 2 joined workers of ``bench_app:app`` started with
``--events`` (so each task's RECEIVED time, taken on the worker's poll thread, is on
``{ns}.events``), paces ``--n`` ``bench.noop`` tasks at ``--rate``/s and prints the median and
p99 of each hop, in ms, from these timestamps (one machine, so one clock):

* ``send`` — the client's wall clock at ``send()`` (``created_at`` of the envelope is the same
  instant, in integer ms);
* ``acked`` — the client saw the broker's acknowledgement of the task record (a thread that
  serves the client producer's callbacks in send order);
* ``received`` — the worker's poll thread took the record (the RECEIVED event);
* ``started`` / ``finished`` — the result record's ``started_at`` / ``finished_at``;
* ``got`` — ``get()`` returned in the client (a thread awaiting the handles in send order).

The worker, the listener and the producers use the settings of ``bench_app`` (so the
``BENCH_*`` variables apply). ``--events`` adds three event records to each task's outputs:
the hops after ``finished`` are a little slower than without it; the ones before are not
touched. Integer-ms timestamps (received, started, finished) make each hop ±1 ms; medians over
the run are what to compare.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import CONSUMER_CONFIG, make_app  # noqa: E402
from run import Ctx, broker, pct, st_workers  # noqa: E402

from streamtasks.kafka import reader  # noqa: E402
from streamtasks.wire.events import TaskEvent, TaskEventType, decode_events  # noqa: E402
from streamtasks.wire.topics import events_topic  # noqa: E402

WARMUP = 60
HOPS = (
    ("send → acked (client produce + broker)", "send", "acked"),
    ("send → received (+ worker fetch)", "send", "received"),
    ("received → started (dispatch to a task thread)", "received", "started"),
    ("started → finished (the task, result built)", "started", "finished"),
    ("finished → got (result produce, listener fetch, wake-up)", "finished", "got"),
    ("enqueue → done (created_at → finished_at)", "send", "finished"),
    ("send → got (what a caller sees)", "send", "got"),
)


def ms() -> float:
    return time.time() * 1000


def _in_order(count: int, handles: list[Any], step: Any, into: list[float]) -> threading.Thread:
    def loop() -> None:
        i = 0
        while i < count:
            if i < len(handles):
                step(handles[i])
                into[i] = ms()
                i += 1
            else:
                time.sleep(0.0002)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def received_times(app: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    for msg in reader.read_to_end(app, [events_topic(app.settings.namespace)]):
        for event in decode_events(msg.value(), msg.headers()):
            if isinstance(event, TaskEvent) and event.type is TaskEventType.RECEIVED:
                out[event.task_id] = float(event.timestamp)
    return out


def one_run(ctx: Ctx, count: int, rate: float) -> dict[str, list[float]]:
    app = make_app(f"benchhops{uuid.uuid4().hex[:8]}", ctx.bootstrap)
    noop = app.tasks["bench.noop"]
    try:
        app.apply_topics()
        with st_workers(ctx, app, "hops", ["--concurrency", "8", "--events"]):
            for h in [noop.send(i) for i in range(WARMUP)]:
                h.get(timeout=60)
            time.sleep(0.5)
            handles: list[Any] = []
            sent = [0.0] * count
            acked = [0.0] * count
            got = [0.0] * count
            threads = [
                _in_order(count, handles, lambda h: h.wait_delivery(timeout=60), acked),
                _in_order(count, handles, lambda h: h.get(timeout=60), got),
            ]
            t0 = time.perf_counter()
            for i in range(count):
                delay = t0 + i / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent[i] = ms()
                handles.append(noop.send(i))
            for t in threads:
                t.join(90)
            recs = [h.record() for h in handles]
            received = received_times(app)
        stamps: dict[str, list[float]] = {k: [] for k in ("send", "acked", "received")}
        stamps |= {"started": [], "finished": [], "got": []}
        for i, rec in enumerate(recs):
            if rec is None or rec.task_id not in received or not got[i]:
                continue
            for key, value in (
                ("send", sent[i]),
                ("acked", acked[i]),
                ("received", received[rec.task_id]),
                ("started", float(rec.started_at or 0)),
                ("finished", float(rec.finished_at or 0)),
                ("got", got[i]),
            ):
                stamps[key].append(value)
        return stamps
    finally:
        app.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--broker", choices=("tansu", "kafka"), default="tansu")
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--runs", type=int, default=1)
    args = ap.parse_args()
    print(f"consumer config: {CONSUMER_CONFIG}")
    with broker(None, args.broker) as (bootstrap, pid, what):
        log_dir = Path(tempfile.mkdtemp(prefix="st-hops-"))
        ctx = Ctx(bootstrap, pid, 2, 8, log_dir, None, None, False, False, [])
        probe = make_app("settings", bootstrap).settings
        lingers = (probe.client_producer()["linger.ms"], probe.worker_producer()["linger.ms"])
        print(f"{what}; linger.ms client {lingers[0]}, worker {lingers[1]}")
        for run in range(args.runs):
            stamps = one_run(ctx, args.n, args.rate)
            print(f"run {run + 1}: {len(stamps['send'])} of {args.n} tasks, ms median / p99")
            for label, a, b in HOPS:
                hop = [y - x for x, y in zip(stamps[a], stamps[b], strict=True)]
                print(f"  {label:58} {pct(hop, 50):6.1f} / {pct(hop, 99):6.1f}")


if __name__ == "__main__":
    main()
