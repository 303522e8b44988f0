"""The worker's own per-task CPU, without a broker: a real Worker on in-process fake clients.

    python bench/worker_path.py [--n 40000] [--repeats 5] [--concurrency 8] [--no-gc-tuning]
                                [--raw]

A real :class:`streamtasks.worker.Worker` runs ``bench.noop`` on N pre-encoded envelopes
(as ``send()`` writes them, 6 partitions, distinct keys). Its consumer and producer are fakes
in this process: the consumer hands out the records in batches as ``consume()`` asks, the
producer acknowledges every output on the next ``poll()``. No librdkafka, no broker, no
network: what is left is the worker's Python path per task (poll loop, dispatch, thread
hop, decode, run, encode, output, acknowledgement, completion, offset store), which the
broker runs hide in a ±15 % spread. Timed from the first ``consume()`` to the last
acknowledgement: process CPU (all threads) and wall time per task, median (min-max) of
``--repeats`` runs in fresh worker objects.

``--raw`` runs the reference instead: ``bench/raw_worker.py --avro`` (run.py's (a'w) worker:
the contract's fastavro work and the offset bookkeeping, single-threaded, nothing else) on
the same envelopes and the same fakes, so the two figures split the (b')/(a'w) gap into the
Python path (this script) and what the real clients and the broker add (run.py).

This is a relative measure for changes to the worker's code (before/after in one run of
this script); it is not a throughput figure, which needs the real clients (``run.py``).
"""

from __future__ import annotations

import argparse
import gc
import os
import signal
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar
from unittest import mock

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

from bench_app import PARTITIONS, make_app  # noqa: E402
from confluent_kafka import Message, TopicPartition  # noqa: E402
from run import _envelopes  # noqa: E402

from streamtasks.kafka import clients  # noqa: E402
from streamtasks.wire.topics import task_topic  # noqa: E402
from streamtasks.worker import Worker, groupwatch  # noqa: E402


class _Meta:
    topics: ClassVar[dict[str, Any]] = {}
    brokers: ClassVar[dict[int, str]] = {1: "fake"}


class FakeProducer:
    """Acknowledges every produced record on the next poll (on the polling thread)."""

    def __init__(self, run: Run) -> None:
        self._run = run
        self._lock = threading.Lock()
        self._pending: list[tuple[Any, str]] = []

    def produce(self, topic: str, value: Any = None, key: Any = None, **kw: Any) -> None:
        cb = kw.get("on_delivery")
        if cb is not None:
            with self._lock:
                self._pending.append((cb, topic))

    def poll(self, timeout: float = 0) -> int:
        """Serves the acknowledgements; with none, sleeps ``timeout`` (acks come in batches,
        as a broker's do, not one wake-up per record)."""
        if not self._pending and timeout:
            time.sleep(timeout)
        with self._lock:
            pending, self._pending = self._pending, []
        for cb, topic in pending:
            cb(None, None)
            if topic == self._run.results:
                self._run.result_acked()
        return len(pending)

    def flush(self, timeout: float = 0) -> int:
        self.poll(0)
        return 0

    def __len__(self) -> int:
        return len(self._pending)

    def list_topics(self, *a: Any, **kw: Any) -> _Meta:
        return _Meta()


class FakeConsumer:
    """Serves the run's records (group consumer) or nothing (index readers)."""

    def __init__(self, run: Run, group: bool) -> None:
        self._run = run
        self._group = group
        self._next = 0
        self._paused: set[int] = set()
        self._assigned = False
        self._on_assign: Any = None

    def subscribe(self, topics: list[str], on_assign: Any = None, **kw: Any) -> None:
        self._on_assign = on_assign

    def _assign_once(self) -> None:
        if not self._assigned and self._on_assign is not None:
            self._assigned = True
            parts = [TopicPartition(self._run.topic, p) for p in range(PARTITIONS)]
            self._on_assign(self, parts)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[Message]:
        self._assign_once()
        if not self._group or self._paused:
            return []
        msgs = self._run.messages
        if self._next == 0:
            self._run.begin()
        out = msgs[self._next : self._next + num_messages]
        self._next += len(out)
        return out

    def poll(self, timeout: float = -1) -> Message | None:
        self._assign_once()
        got = self.consume(1, 0)
        if got:
            return got[0]
        time.sleep(min(max(timeout, 0), 0.001))
        return None

    def pause(self, parts: list[TopicPartition]) -> None:
        self._paused.update(p.partition for p in parts)

    def resume(self, parts: list[TopicPartition]) -> None:
        self._paused.difference_update(p.partition for p in parts)

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(self._run.topic, p) for p in range(PARTITIONS)]

    def store_offsets(self, *a: Any, **kw: Any) -> None:
        pass

    def commit(self, *a: Any, **kw: Any) -> None:
        pass

    def committed(self, parts: list[TopicPartition], **kw: Any) -> list[TopicPartition]:
        return parts

    def seek(self, *a: Any) -> None:
        pass

    def list_topics(self, *a: Any, **kw: Any) -> _Meta:
        return _Meta()

    def close(self) -> None:
        pass

    def unsubscribe(self) -> None:
        pass


class _Watch:
    def start(self) -> _Watch:
        return self

    def stop(self) -> None:
        pass


class _Stop:
    def stop(self) -> None:
        """The raw worker stops on SIGINT (its own handler sets its loop's flag)."""
        os.kill(os.getpid(), signal.SIGINT)


class Run:
    def __init__(self, n: int, topic: str, results: str, messages: list[Message]) -> None:
        self.n = n
        self.topic = topic
        self.results = results
        self.messages = messages
        self.acked = 0
        self.worker: Worker | _Stop | None = None
        self.t0 = self.c0 = self.t1 = self.c1 = 0.0

    def begin(self) -> None:
        self.t0, self.c0 = time.perf_counter(), time.process_time()

    def result_acked(self) -> None:
        self.acked += 1
        if self.acked == self.n:
            self.t1, self.c1 = time.perf_counter(), time.process_time()
            assert self.worker is not None
            self.worker.stop()


def _messages(topic: str, n: int) -> list[Message]:
    """``n`` envelopes as ``send()`` writes them (run.py's (b') input), as consumed records."""
    now = int(time.time() * 1000)
    return [
        Message(
            topic=topic,
            partition=i % PARTITIONS,
            offset=i // PARTITIONS,
            key=tid.encode(),
            value=value,
            headers=headers,
            timestamp=(1, now),
        )
        for i, (tid, value, headers) in enumerate(_envelopes(n))
    ]


@contextmanager
def _fakes(run: Run) -> Iterator[None]:
    def consumer(cfg: dict[str, Any]) -> FakeConsumer:
        return FakeConsumer(run, group="group.id" in cfg and cfg.get("group.id") is not None)

    with (
        mock.patch.object(clients, "make_producer", lambda cfg: FakeProducer(run)),
        mock.patch.object(clients, "make_consumer", consumer),
        mock.patch.object(groupwatch, "AssignmentWatch", lambda *a, **kw: _Watch()),
    ):
        yield


class _GcClock:
    """Time spent in the cyclic collector (``gc.callbacks``) while ``run`` is timed."""

    def __init__(self, run: Run) -> None:
        self.seconds = 0.0
        self._run = run
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if not self._run.t0 or self._run.t1:
            return  # before the first consume() or after the last acknowledgement
        if phase == "start":
            self._t0 = time.perf_counter()
        elif self._t0:
            self.seconds += time.perf_counter() - self._t0


def one_run(
    n: int, concurrency: int, gc_tuning: bool = True, *, setup_only: bool = False
) -> tuple[float, float, float]:
    """CPU and wall µs a task and µs a task in the collector (zeros if ``setup_only``: the
    app and the envelopes are made, no worker runs; for bench/worker_instructions.py)."""
    ns = f"wp{uuid.uuid4().hex[:8]}"
    app = make_app(ns, "fake:9092")
    topic = task_topic(ns, app.tasks["bench.noop"].queue)
    run = Run(n, topic, f"{ns}.results", _messages(topic, n))
    if setup_only:
        return 0.0, 0.0, 0.0
    gc.collect()  # the garbage of the last run is not this one's
    clock = _GcClock(run)
    gc.callbacks.append(clock)
    try:
        with _fakes(run):
            worker = Worker(
                app,
                concurrency=concurrency,
                create_topics=False,
                heartbeat_interval=3600,
                gc_tuning=gc_tuning,
            )
            run.worker = worker
            worker.run(install_signal_handlers=False)
    finally:
        gc.callbacks.remove(clock)
    if run.acked != n:
        raise SystemExit(f"only {run.acked} of {n} results acknowledged")
    return (run.c1 - run.c0) / n * 1e6, (run.t1 - run.t0) / n * 1e6, clock.seconds / n * 1e6


def one_raw_run(n: int, *, setup_only: bool = False) -> float:
    """CPU µs a task of ``raw_worker.py --avro`` on the fakes (its loop, in this process);
    0 if ``setup_only`` (the envelopes made, no run)."""
    import raw_worker

    ns = f"wp{uuid.uuid4().hex[:8]}"
    topic = f"{ns}.in"
    run = Run(n, topic, f"{ns}.results", _messages(topic, n))
    if setup_only:
        return 0.0
    run.worker = _Stop()
    gc.collect()
    old = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with (
        mock.patch.object(raw_worker, "Producer", lambda cfg: FakeProducer(run)),
        mock.patch.object(raw_worker, "Consumer", lambda cfg: FakeConsumer(run, group=True)),
        mock.patch.object(raw_worker, "_emit", lambda *a, **kw: None),
    ):
        try:
            argv = ["--bootstrap", "fake:9092", "--group", "g", "--in-topic", topic]
            raw_worker.main([*argv, "--out-topic", run.results, "--avro"])
        finally:
            signal.signal(signal.SIGINT, old[0])
            signal.signal(signal.SIGTERM, old[1])
    if run.acked != n:
        raise SystemExit(f"only {run.acked} of {n} results acknowledged")
    return (run.c1 - run.c0) / n * 1e6


def _spread(values: list[float], digits: int = 1) -> str:
    """``median (min-max)``."""
    med, low, high = statistics.median(values), min(values), max(values)
    return f"{med:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=40000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument(
        "--gc-tuning",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the worker's collector tuning (streamtasks.worker.gctune), on by default",
    )
    ap.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument(
        "--raw",
        action="store_true",
        help="the raw + Avro reference worker instead (single-threaded: ignores --concurrency "
        "and --gc-tuning)",
    )
    args = ap.parse_args()
    os.environ.setdefault("STREAMTASKS_LOG_LEVEL", "WARNING")
    if args.raw:
        one_raw_run(2000)
        raw = [one_raw_run(args.n, setup_only=args.setup_only) for _ in range(args.repeats)]
        print(
            f"raw + Avro worker path (raw_worker.py --avro), {args.n} no-op tasks, "
            f"{args.repeats} runs: CPU {_spread(raw)} us/task"
        )
        print("  runs, CPU us/task:", " ".join(f"{c:.1f}" for c in raw))
        return 0
    one_run(2000, args.concurrency, args.gc_tuning)  # warm-up: imports, schema parsing
    cpu, wall, in_gc = [], [], []
    for _ in range(args.repeats):
        c, w, g = one_run(args.n, args.concurrency, args.gc_tuning, setup_only=args.setup_only)
        cpu.append(c)
        wall.append(w)
        in_gc.append(g)
    print(
        f"worker path, {args.n} no-op tasks, concurrency {args.concurrency}, "
        f"gc tuning {'on' if args.gc_tuning else 'off'}, "
        f"{args.repeats} runs: CPU {_spread(cpu)} us/task, wall {_spread(wall)} us/task, "
        f"in the collector {_spread(in_gc, 2)} us/task"
    )
    print("  runs, CPU us/task:", " ".join(f"{c:.1f}" for c in cpu))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
