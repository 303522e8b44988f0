"""The dashboard under load: 100k results (+ their task events, + lifecycle events at a steady
rate) on an embedded Tansu broker, then a real ``streamtasks dashboard`` process; prints how
long it takes to catch up, its memory (RSS, peak) and the latency of each page.

    .venv/bin/python bench/dashboard_load.py [--results 100000] [--events-per-minute 10000]

The figures are printed, not asserted (this machine is shared; see the README's load section).
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
import urllib.request
import uuid
from pathlib import Path

from streamtasks import App
from streamtasks.dashboard.aggregates import Aggregates
from streamtasks.dashboard.tails import timeline_entry
from streamtasks.dev.broker import EmbeddedBroker
from streamtasks.kafka import Producer, clients
from streamtasks.kafka.delivery import produce_with_room
from streamtasks.wire.envelope import Envelope, ErrorInfo, ResultRecord, TaskStatus, now_ms
from streamtasks.wire.events import (
    TaskEvent,
    TaskEventType,
    event_record,
)
from streamtasks.wire.topics import events_topic, results_topic, task_topic

ROOT = Path(__file__).resolve().parents[1]
NS = os.environ.get("STREAMTASKS_NAMESPACE", "dashload")
PAGES = ["/", "/tasks", "/failures", "/dlq", "/schedules", "/workers"]


def build(bootstrap: str | None = None) -> App:
    a = App("dashload", namespace=NS, partitions=6, bootstrap_servers=bootstrap)

    @a.task(name="resize")
    def resize(image: str, width: int) -> str:
        return f"{image}@{width}"

    @a.task(name="charge")
    def charge(order: str, cents: int) -> int:
        return cents

    return a


app = build()  # the dashboard process loads this one (bootstrap from -b)


TRACEBACK = "Traceback (most recent call last):\n" + '  File "x.py", line 1, in f\n' * 12


def _records(app: App, n: int, now: int) -> list[tuple[Envelope, ResultRecord]]:
    rnd = random.Random(7)
    out = []
    for i in range(n):
        name = "resize" if i % 2 else "charge"
        args = (f"img-{i}.png", 640) if name == "resize" else (f"o-{i}", i)
        tid = uuid.uuid4().hex
        at = now - rnd.randrange(0, 55 * 60_000)
        env = Envelope(tid, name, "default", app.tasks[name].encode_args(args, {}), created_at=at)
        failed = i % 10 == 0
        rec = ResultRecord(
            tid,
            name,
            TaskStatus.FAILURE if failed else TaskStatus.SUCCESS,
            1,
            at - 5,
            worker_id="w-1",
            started_at=at - 3,
            finished_at=at,
            value=None if failed else app.tasks[name].encode_result(app.tasks[name](*args)),
            error=ErrorInfo(rnd.choice(["ValueError", "TimeoutError"]), f"#{i}", TRACEBACK)
            if failed
            else None,
        )
        out.append((env, rec))
    return out


def _feed(app: App, n: int) -> tuple[float, str]:
    ns = app.settings.namespace
    producer = clients.make_producer(app.settings.producer(**{"linger.ms": 20}))
    started = time.monotonic()
    records = _records(app, n, now_ms())
    for env, rec in records:
        produce_with_room(
            producer,
            task_topic(ns, "default"),
            app.codec.encode(app.envelope_schema, env.to_avro()),
            key=env.id,
        )
        produce_with_room(
            producer,
            results_topic(ns),
            app.codec.encode(app.result_schema, rec.to_avro()),
            key=rec.task_id,
        )
        for ev in _events_of(env, rec):
            _produce_event(producer, events_topic(ns), ev)
    producer.flush(60)
    return time.monotonic() - started, records[-1][1].task_id


def _events_of(env: Envelope, rec: ResultRecord) -> list[TaskEvent]:
    end = TaskEventType.FAILED if rec.status is TaskStatus.FAILURE else TaskEventType.SUCCEEDED
    started = rec.started_at or rec.created_at
    return [
        TaskEvent(env.id, env.task, "default", TaskEventType.STARTED, 1, started, "w-1"),
        TaskEvent(
            env.id, env.task, "default", end, 1, rec.finished_at or started, "w-1", 2.0, rec.error
        ),
    ]


def _produce_event(producer: Producer, topic: str, ev: TaskEvent) -> None:
    key, value, headers = event_record(ev)
    produce_with_room(producer, topic, value, key=key, headers=headers)


def _event_stream(app: App, per_minute: int, stop: threading.Event) -> None:
    """Task events at a steady rate on {ns}.events, as workers with events on write them."""
    producer = clients.make_producer(app.settings.producer())
    topic = events_topic(app.settings.namespace)
    gap = 60.0 / per_minute
    due = time.monotonic()
    while not stop.is_set():
        ev = TaskEvent(uuid.uuid4().hex, "resize", "default", TaskEventType.STARTED, 1)
        _produce_event(producer, topic, ev)
        producer.poll(0)
        due += gap
        delay = due - time.monotonic()
        if delay > 0:
            stop.wait(delay)
    producer.flush(10)


def _aggregates_heap(n: int) -> None:
    """The aggregates alone, in this process: their Python heap after n results and 2n events
    (and again after 3n more), by tracemalloc — what grows with traffic, if anything."""
    tracemalloc.start()
    agg = Aggregates()
    now = now_ms()
    fed = 0
    for batch in (n, 3 * n):
        for env, rec in _records(build(), batch, now):
            agg.record_result(rec, "default", now)
            for ev in _events_of(env, rec):
                agg.record_event(ev.task_id, timeline_entry(ev))
            agg.record_args(env.id, env.task, env.args)
        fed += batch
        current, _peak = tracemalloc.get_traced_memory()
        print(
            f"aggregates after {fed} results + {2 * fed} events: Python heap "
            f"{current / 2**20:.1f} MiB; held {agg.sizes()}"
        )
    tracemalloc.stop()


def _rss(pid: int) -> tuple[int, int]:
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(fields["VmRSS"].split()[0]) // 1024, int(fields["VmHWM"].split()[0]) // 1024


def _get(url: str) -> tuple[float, str]:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as r:
        body = r.read().decode()
    return time.perf_counter() - t, body


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--results", type=int, default=100_000)
    ap.add_argument("--events-per-minute", type=int, default=10_000)
    ap.add_argument("--port", type=int, default=18799)
    ap.add_argument("--soak", type=int, default=180, help="seconds of events after catching up")
    opts = ap.parse_args()
    _aggregates_heap(opts.results)
    with EmbeddedBroker() as broker:
        app = build(broker.bootstrap_servers)
        app.apply_topics()
        took, last_id = _feed(app, opts.results)
        print(
            f"fed {opts.results} results, {opts.results} task records and "
            f"{2 * opts.results} lifecycle events in {took:.1f}s"
        )
        stop = threading.Event()
        events = threading.Thread(target=_event_stream, args=(app, opts.events_per_minute, stop))
        events.start()
        cache = tempfile.mkdtemp(prefix="dashload-")
        cmd = [sys.executable, "-m", "streamtasks", "-b", broker.bootstrap_servers, "dashboard"]
        cmd += ["bench.dashboard_load:app", "--port", str(opts.port), "--cache-dir", cache]
        env = {**os.environ, "STREAMTASKS_NAMESPACE": NS}
        dash = subprocess.Popen(cmd, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{opts.port}"
        try:
            started = time.monotonic()
            while True:
                try:
                    _, body = _get(base + "/")
                    found = re.search(r'class="num finished">(\d+)<', body)
                    if found and int(found.group(1)) >= opts.results:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            print(f"caught up with {opts.results} results in {time.monotonic() - started:.1f}s")
            rss, peak = _rss(dash.pid)
            print(f"dashboard RSS {rss} MiB (peak {peak} MiB) after catching up")
            for page in [*PAGES, f"/tasks?id={last_id}"]:
                times = sorted(_get(base + page)[0] for _ in range(20))
                print(
                    f"  GET {page[:24]:24} p50 {statistics.median(times) * 1000:7.1f} ms   "
                    f"max {times[-1] * 1000:7.1f} ms"
                )
            for waited in range(30, opts.soak + 1, 30):  # events keep flowing: memory?
                time.sleep(30)
                rss, peak = _rss(dash.pid)
                print(f"dashboard RSS {rss} MiB (peak {peak} MiB) after {waited} s more of events")
        finally:
            stop.set()
            events.join()
            dash.terminate()
            dash.wait(10)


if __name__ == "__main__":
    main()
