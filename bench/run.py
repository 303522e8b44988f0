#!/usr/bin/env python
"""streamtasks throughput/latency benchmark against a raw confluent-kafka baseline.

    python bench/run.py [--n 20000] [--workers 2] [--rate 200] [--latency-n 2000]
                        [--sleep-n 2000] [--sleep-concurrency 50] [--async-concurrency 100]
                        [--parts raw,rawavro,st,workers,latency,sleep,asleep]
                        [--broker tansu|kafka | --bootstrap-servers HOST:PORT]
                        [--json out.json] [--py-spy DIR]

Parts (each on fresh topics / a fresh namespace, workers joined before anything is timed,
a warm-up of 60 tasks/records sent and awaited first):

(a)  raw: N ~envelope-sized records keyed by a uuid -> W raw confluent-kafka worker processes
     (bench/raw_worker.py: no-op, one acks=all result per input, offsets stored after the ack)
     -> results topic, counted by a reader thread. tasks/s = N / (first produce -> last
     result read). Run --raw-repeats times on the same topics; the median is reported.
(b)  streamtasks: N ``bench.noop`` tasks (bench/bench_app.py) -> W ``streamtasks worker``
     processes; tasks/s = N / (first send -> last ``AsyncResult.get`` returned).
(b') streamtasks workers only: the same W workers fed N pre-encoded envelopes by a bare
     producer, results counted by the raw reader: the worker side alone, timed like (a).
(a') references, not the baseline: (a) plus the Avro work the streamtasks contract implies
     and nothing else, with fastavro alone. (a'w): raw workers that decode each envelope and
     its arguments and encode the return value and a result record (raw_worker.py --avro),
     fed pre-encoded envelopes like (b'). (a'e): the same, and the sender encodes each
     envelope as it sends it and the reader decodes each result record, like (b).
(c)  ratios b / a and b' / a; (c'') b / a'e and b' / a'w.
(d)  latency: --latency-n tasks paced at --rate/s to idle, joined workers; percentiles of
     finished_at - created_at and started_at - created_at from the result records (worker and
     client clocks are the same machine's), and of send -> ``get()`` returned in the client.
     Also the CPU that W joined, idle workers (and the broker) burn over 3 s.
(e)  VmRSS / VmHWM of the worker processes (from /proc) at the end of each part.
(f)  sleep-bound: --sleep-n ``bench.sleep20`` tasks (time.sleep(0.02)) -> W workers started
     with ``--concurrency`` --sleep-concurrency (part "sleep"), and the same with
     ``bench.asleep20`` (await asyncio.sleep(0.02)) -> W workers started with
     ``--async-concurrency`` --async-concurrency (part "asleep"). Wall time = first send ->
     last ``AsyncResult.get`` returned, printed against --sleep-target (not asserted).

"CPU during run" is user+system CPU of this process (the client: sending + result listener),
the broker (embedded only) and the workers over the timed span, from /proc.

Without --bootstrap-servers (or STREAMTASKS_BOOTSTRAP_SERVERS) a broker is started for the run
and stopped at the end: the embedded Tansu (--broker tansu, default) or a local single-node
Apache Kafka (--broker kafka; Java 17+, jars from Maven on first use). Ratios are always
against the raw baseline on the same broker in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
if str(BENCH_DIR) not in sys.path:
    sys.path.insert(0, str(BENCH_DIR))

import fastavro  # noqa: E402
import overhead  # noqa: E402
from bench_app import CONSUMER_CONFIG, PARTITIONS, make_app  # noqa: E402
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition  # noqa: E402

from streamtasks import App  # noqa: E402
from streamtasks.dev.processes import AssignmentLog, WorkerProcess, wait_for_workers  # noqa: E402
from streamtasks.kafka import clients  # noqa: E402
from streamtasks.wire.codec import MAGIC  # noqa: E402
from streamtasks.wire.envelope import Envelope, ResultRecord, TaskStatus  # noqa: E402
from streamtasks.wire.topics import TopicSpec, results_topic  # noqa: E402

IDLE_S = 3.0  # seconds of idle-CPU measurement in the latency part
WARMUP = 60  # records/tasks sent and awaited before each timed part (touches every partition)
SLEEP_S = 0.02  # what bench.sleep20 / bench.asleep20 sleep
CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- /proc helpers ---------------------------------------------------------------------------
def proc_mem(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of ``pid`` in MiB."""
    out: dict[str, float] = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    name, value = line.split(":", 1)
                    out[name] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def proc_cpu(pid: int) -> float:
    """User + system CPU seconds used by ``pid`` (all threads) so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@dataclass
class CpuMeter:
    """CPU seconds used by the client (this process), the broker and the workers over a span."""

    broker_pid: int | None
    worker_pids: list[int]
    start: dict[str, float] = field(default_factory=dict)
    used: dict[str, float] = field(default_factory=dict)

    def _now(self) -> dict[str, float]:
        snap = {"client": time.process_time()}
        if self.broker_pid:
            snap["broker"] = proc_cpu(self.broker_pid)
        snap["workers"] = sum(proc_cpu(p) for p in self.worker_pids)
        return snap

    def __enter__(self) -> CpuMeter:
        self.start = self._now()
        return self

    def __exit__(self, *exc: object) -> None:
        end = self._now()
        self.used = {k: end[k] - self.start[k] for k in end}


def pct(values: Sequence[float], q: float) -> float:
    s = sorted(values)
    if not s:
        return float("nan")
    k = min(len(s) - 1, max(0, round(q / 100 * (len(s) - 1))))
    return s[k]


# -- processes ----------------------------------------------------------------------------------
class RawWorkerProcess:
    """A bench/raw_worker.py subprocess (same readiness protocol as ``WorkerProcess``)."""

    def __init__(self, cmd: list[str], log_path: str) -> None:
        self.cmd = cmd
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = AssignmentLog(log_path)

    def start(self) -> RawWorkerProcess:
        with open(self.log_path, "ab") as log:
            self._log = AssignmentLog(self.log_path, offset=log.tell())
            self._proc = subprocess.Popen(self.cmd, stdout=log, stderr=subprocess.STDOUT)
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def log_text(self) -> str:
        return Path(self.log_path).read_text(errors="replace")

    def assignment(self) -> set[str]:
        return self._log.assignment()

    def terminate(self, timeout: float = 15.0) -> None:
        if self._proc is None or self._proc.poll() is not None:
            return
        self._proc.terminate()
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


class PySpy:
    """``py-spy record`` on one process for the timed span (collapsed stacks per thread)."""

    def __init__(
        self, binary: str, pid: int, out: Path, *, native: bool = False, idle: bool = False
    ) -> None:
        cmd = [binary, "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
        cmd += ["--threads", "-o", str(out)]
        # --native cannot be combined with --nonblocking (it pauses the process per sample)
        cmd.append("--native" if native else "--nonblocking")
        if idle:
            cmd.append("--idle")
        self.out = out
        self._proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(0.5)  # attach

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(15)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()


def wait_ready(workers: Sequence[Any], topic: str, partitions: int, timeout: float = 60) -> None:
    """Block until the raw ``workers`` together own every partition of ``topic`` exactly once
    (each owning some), read from their "partitions assigned" log lines. (streamtasks workers
    use ``streamtasks.dev.processes.wait_for_workers`` over all of ``app.worker_topics()``.)"""
    deadline = time.monotonic() + timeout
    prefix = f"{topic}["
    owned: list[set[str]] = []
    while time.monotonic() < deadline:
        for w in workers:
            if w.returncode is not None:
                raise RuntimeError(
                    f"worker exited with {w.returncode} before it was ready:\n"
                    + w.log_text()[-3000:]
                )
        owned = [{p for p in w.assignment() if p.startswith(prefix)} for w in workers]
        union = set().union(*owned)
        total = sum(len(o) for o in owned)
        everyone = all(owned) or len(workers) > partitions
        if len(union) == partitions and total == partitions and everyone:
            return
        time.sleep(0.05)
    raise RuntimeError(f"workers not ready after {timeout:.0f}s: they own {owned} of {topic}")


# -- the raw baseline's reader ------------------------------------------------------------------
class CountingReader:
    """Counts records on a topic (all partitions, from the beginning) in a thread."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        partitions: int,
        decode: Callable[[bytes | None], object] | None = None,
    ) -> None:
        self._decode = decode  # called on each record's value (a client reading its results)
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"bench-reader-{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": CONSUMER_CONFIG["fetch.wait.max.ms"],
            }
        )
        self._consumer.assign(
            [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        )
        self._cond = threading.Condition()
        self._count = 0
        self._target: int | None = None
        self._reached_at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                msgs = self._consumer.consume(1000, 0)  # a timeout would be waited in full
                if not msgs:
                    one = self._consumer.poll(0.05)
                    msgs = [one] if one is not None else []
                good = [m for m in msgs if m.error() is None]
                if self._decode is not None:
                    for m in good:
                        self._decode(m.value())
                n = len(good)
                if n:
                    now = time.perf_counter()
                    with self._cond:
                        self._count += n
                        if self._target is not None and self._count >= self._target:
                            if self._reached_at is None:
                                self._reached_at = now
                            self._cond.notify_all()
        finally:
            self._consumer.close()

    def wait_for(self, target: int, timeout: float) -> float:
        """perf_counter time at which ``target`` records had been read."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._target, self._reached_at = target, None
            if self._count >= target:
                return time.perf_counter()
            while self._reached_at is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"read {self._count} of {target} results in {timeout}s")
                self._cond.wait(left)
            return self._reached_at

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)


# -- parts --------------------------------------------------------------------------------------
@dataclass
class Ctx:
    bootstrap: str
    broker_pid: int | None
    workers: int
    concurrency: int
    log_dir: Path
    py_spy: str | None
    profile_dir: Path | None
    native: bool
    idle: bool
    worker_args: list[str]


def envelope_sizes() -> tuple[int, int]:
    """Encoded size of a bench.noop envelope and of its result record (no headers)."""
    app = make_app("sizes", "unused:9092")
    noop = app.tasks["bench.noop"]
    tid = uuid.uuid4().hex
    env = Envelope(
        id=tid, task=noop.name, queue=noop.queue, args=noop.encode_args((12345,), {}), root_id=tid
    )
    rec = ResultRecord(
        task_id=tid,
        task=noop.name,
        status=TaskStatus.SUCCESS,
        attempts=1,
        created_at=1,
        worker_id="hostname-12345-abcdef",
        started_at=2,
        finished_at=3,
        value=noop.encode_result(12345),
    )
    return (
        len(app.codec.encode(app.envelope_schema, env.to_avro())),
        len(app.codec.encode(app.result_schema, rec.to_avro())),
    )


def producer_config(bootstrap: str) -> dict[str, Any]:
    return {
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "partitioner": "murmur2_random",
    }


def run_raw(
    ctx: Ctx,
    n: int,
    payload_size: int,
    result_size: int,
    repeats: int,
    *,
    avro: bool = False,
    client_avro: bool = False,
) -> dict[str, Any]:
    """(a); with ``avro`` the raw workers decode real envelopes and encode result records
    with fastavro (``raw_worker.py --avro``), fed pre-encoded envelopes like (b'): (a'w);
    with ``client_avro`` too, the sender encodes each envelope in the timed span and the
    reader decodes each result record, like (b): (a'e)."""
    ns = f"benchraw{'avro' if avro else ''}{uuid.uuid4().hex[:8]}"
    in_topic, out_topic = f"{ns}.in", f"{ns}.out"
    admin = clients.make_admin({"bootstrap.servers": ctx.bootstrap})
    clients.apply_topics(admin, [TopicSpec(in_topic, PARTITIONS), TopicSpec(out_topic, PARTITIONS)])
    consumer_extra = {k: v for k, v in CONSUMER_CONFIG.items()}
    workers = [
        RawWorkerProcess(
            [
                sys.executable,
                str(BENCH_DIR / "raw_worker.py"),
                "--bootstrap",
                ctx.bootstrap,
                "--group",
                f"{ns}.workers",
                "--in-topic",
                in_topic,
                "--out-topic",
                out_topic,
                "--result-size",
                str(result_size),
                "--consumer-config",
                json.dumps(consumer_extra),
                *(["--avro"] if avro else []),
            ],
            str(ctx.log_dir / f"raw{'avro' if avro else ''}-worker-{i}.log"),
        )
        for i in range(ctx.workers)
    ]
    reader = None
    try:
        for w in workers:
            w.start()
        t_join = time.perf_counter()
        wait_ready(workers, in_topic, PARTITIONS)
        join_s = time.perf_counter() - t_join
        # (a'): the client side does its Avro work too, inside the timed span: it encodes each
        # envelope as it sends it and decodes each result record it reads
        decode = None
        if client_avro:
            envelopes, decode = _raw_avro_client()  # encoded as they are sent
        elif avro:
            envelopes = iter(_envelopes(WARMUP + repeats * n))
        else:
            payload = b"x" * payload_size
            envelopes = ((uuid.uuid4().hex, payload, None) for _ in itertools.count())
        reader = CountingReader(ctx.bootstrap, out_topic, PARTITIONS, decode)
        producer = Producer(producer_config(ctx.bootstrap))

        def produce(count: int) -> None:
            produce_all(producer, in_topic, itertools.islice(envelopes, count))

        produce(WARMUP)
        producer.flush(30)
        reader.wait_for(WARMUP, 60)
        runs = []  # the raw run is short (~0.2 s at N=20000): repeat it, report the median
        for k in range(repeats):
            with CpuMeter(ctx.broker_pid, [w.pid for w in workers]) as cpu:
                t0 = time.perf_counter()
                produce(n)
                producer.flush(60)
                t_sent = time.perf_counter()
                t_done = reader.wait_for(WARMUP + (k + 1) * n, 120)
            runs.append((t_done - t0, t_sent - t0, cpu.used))
        runs.sort(key=lambda r: r[0])
        total_s, send_s, cpu_used = runs[len(runs) // 2]
        mem = [proc_mem(w.pid) for w in workers]
        return {
            "n": n,
            "join_s": join_s,
            "send_s": send_s,
            "total_s": total_s,
            "tasks_per_s": n / total_s,
            "all_runs_tasks_per_s": [n / r[0] for r in runs],
            "cpu_s": cpu_used,
            "worker_mem_mib": mem,
        }
    finally:
        if reader is not None:
            reader.close()
        for w in workers:
            w.terminate()


def start_spies(ctx: Ctx, workers: Sequence[WorkerProcess], tag: str) -> list[PySpy]:
    if not (ctx.py_spy and ctx.profile_dir):
        return []
    return [
        PySpy(
            ctx.py_spy,
            w.pid,
            ctx.profile_dir / f"{tag}-worker-{i}.txt",
            native=ctx.native,
            idle=ctx.idle,
        )
        for i, w in enumerate(workers)
    ]


@contextlib.contextmanager
def st_workers(
    ctx: Ctx, app: App, tag: str, options: Sequence[str] | None = None
) -> Iterator[list[WorkerProcess]]:
    """``ctx.workers`` ``streamtasks worker`` processes of ``app``'s namespace, yielded once
    they together own every partition of every topic a worker consumes (the task topic and
    its retry tiers: ``app.worker_topics()``). ``options`` replaces the default
    ``--concurrency ctx.concurrency``; ``ctx.worker_args`` are appended either way."""
    if options is None:
        options = ["--concurrency", str(ctx.concurrency)]
    ns = app.settings.namespace
    pythonpath = os.pathsep.join(p for p in (str(BENCH_DIR), os.environ.get("PYTHONPATH")) if p)
    procs = [
        WorkerProcess(
            "bench_app:app",
            bootstrap=ctx.bootstrap,
            env={
                "STREAMTASKS_NAMESPACE": ns,
                "PYTHONPATH": pythonpath,
            },
            args=[*options, *ctx.worker_args],
            cwd=str(BENCH_DIR),
            log_path=str(ctx.log_dir / f"{tag}-worker-{i}.log"),
            log_level="info",  # readiness is read from the "partitions assigned" lines
        )
        for i in range(ctx.workers)
    ]
    try:
        for p in procs:
            p.start()
        wait_for_workers(procs, app.worker_partitions())
        yield procs
    finally:
        for p in procs:
            p.terminate(timeout=20)


@dataclass
class Sent:
    """A timed batch of ``send()`` calls, each awaited in order with ``get()``."""

    handles: list[Any]
    t0: float  # first send()
    t_enqueued: float  # last send() returned
    t_sent: float  # flushed: every task record acknowledged
    t_done: float  # last get() returned
    wrong: int  # get() values that were not the task's input

    def timings(self) -> dict[str, float]:
        n = len(self.handles)
        return {
            "enqueue_s": self.t_enqueued - self.t0,
            "send_s": self.t_sent - self.t0,
            "total_s": self.t_done - self.t0,
            "tasks_per_s": n / (self.t_done - self.t0),
            "wrong_results": self.wrong,
        }


def tasks_per_worker(recs: Iterable[ResultRecord | None]) -> list[int]:
    """How many of ``recs`` each worker ran, sorted."""
    per_worker: dict[str, int] = {}
    for r in recs:
        if r is not None and r.worker_id:
            per_worker[r.worker_id] = per_worker.get(r.worker_id, 0) + 1
    return sorted(per_worker.values())


def send_and_await(app: App, task: Any, n: int) -> Sent:
    """``task.send(i)`` for i < n, flush, then ``get()`` each (a task returning its input)."""
    t0 = time.perf_counter()
    handles = [task.send(i) for i in range(n)]
    t_enqueued = time.perf_counter()
    app.flush(60)
    t_sent = time.perf_counter()
    wrong = 0
    for i, h in enumerate(handles):
        if h.get(timeout=max(1.0, 120 - (time.perf_counter() - t0))) != i:
            wrong += 1
    return Sent(handles, t0, t_enqueued, t_sent, time.perf_counter(), wrong)


def produce_all(producer: Producer, topic: str, records: Iterable[tuple[str, bytes, Any]]) -> None:
    """Produce (key, value, headers) records, waiting for queue room when it is full."""
    for key, value, headers in records:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)


def run_streamtasks(ctx: Ctx, n: int) -> dict[str, Any]:
    ns = f"benchst{uuid.uuid4().hex[:8]}"
    app = make_app(ns, ctx.bootstrap)
    noop = app.tasks["bench.noop"]
    try:
        app.apply_topics()
        t_join = time.perf_counter()
        with st_workers(ctx, app, "st") as workers:
            join_s = time.perf_counter() - t_join
            warm = [noop.send(i) for i in range(WARMUP)]
            for h in warm:
                h.get(timeout=60)
            spies = start_spies(ctx, workers, "st")
            if spies and ctx.py_spy and ctx.profile_dir:  # and this process: send() + listener
                spies.append(PySpy(ctx.py_spy, os.getpid(), ctx.profile_dir / "st-client.txt"))
            try:
                with CpuMeter(ctx.broker_pid, [w.pid for w in workers]) as cpu:
                    sent = send_and_await(app, noop, n)
            finally:
                for s in spies:
                    s.stop()
            mem = [proc_mem(w.pid) for w in workers]
            client_mem = proc_mem(os.getpid())
            recs = [h.record() for h in sent.handles]
            done_ms = [r.finished_at - r.created_at for r in recs if r and r.finished_at]
        return {
            "n": n,
            "join_s": join_s,
            **sent.timings(),
            "enqueue_to_done_under_load_ms": {"p50": pct(done_ms, 50), "p99": pct(done_ms, 99)},
            "tasks_per_worker": tasks_per_worker(recs),
            "cpu_s": cpu.used,
            "worker_mem_mib": mem,
            "client_mem_mib": client_mem,
        }
    finally:
        app.close()


def _raw_avro_client() -> tuple[Iterator[tuple[str, bytes, Any]], Callable[[bytes | None], object]]:
    """The client side of (a'e), with fastavro alone: a stream of envelopes encoded as they
    are taken (the same bytes ``send()`` writes), and a result-record decoder."""
    app = make_app("rawavro", "unused:9092")
    noop = app.tasks["bench.noop"]
    env_head = MAGIC + app.envelope_schema.fingerprint
    args_head = MAGIC + noop.args_schema.fingerprint
    env_p, args_p = app.envelope_schema.parsed, noop.args_schema.parsed
    res_p = app.result_schema.parsed
    name = noop.name.encode()

    def stream() -> Iterator[tuple[str, bytes, Any]]:
        for i in itertools.count():
            tid = uuid.uuid4().hex
            buf = io.BytesIO()
            buf.write(args_head)
            fastavro.schemaless_writer(buf, args_p, {"i": i})
            env = {
                "id": tid,
                "task": noop.name,
                "queue": noop.queue,
                "attempt": 1,
                "created_at": time.time_ns() // 1_000_000,
                "eta": None,
                "expires": None,
                "parent_id": None,
                "root_id": tid,
                "workflow_id": None,
                "continuation": [],
                "last_error": None,
                "args": buf.getvalue(),
                "link_error": [],
            }
            out = io.BytesIO()
            out.write(env_head)
            fastavro.schemaless_writer(out, env_p, env)
            yield (
                tid,
                out.getvalue(),
                [("st-task", name), ("st-id", tid.encode()), ("st-attempt", b"1")],
            )

    def decode(value: bytes | None) -> object:
        assert value is not None
        frame = io.BytesIO(value[len(env_head) :])  # every frame: marker + 8-byte fingerprint
        return fastavro.schemaless_reader(frame, res_p, None)

    return stream(), decode


def _envelopes(count: int) -> list[tuple[str, bytes, Any]]:
    """``count`` encoded ``bench.noop`` envelopes (key, value, headers), as ``send()``
    produces them."""
    app = make_app("envelopes", "unused:9092")
    noop = app.tasks["bench.noop"]
    records = []
    for i in range(count):
        tid = uuid.uuid4().hex
        env = Envelope(
            id=tid, task=noop.name, queue=noop.queue, args=noop.encode_args((i,), {}), root_id=tid
        )
        headers = [("st-task", noop.name.encode()), ("st-id", tid.encode()), ("st-attempt", b"1")]
        records.append((tid, app.codec.encode(app.envelope_schema, env.to_avro()), headers))
    return records


def run_workers_only(ctx: Ctx, n: int) -> dict[str, Any]:
    """streamtasks workers fed pre-encoded envelopes by a bare producer; results counted
    by the raw baseline's reader: the worker side alone, measured like the baseline."""
    ns = f"benchwo{uuid.uuid4().hex[:8]}"
    app = make_app(ns, ctx.bootstrap)
    noop = app.tasks["bench.noop"]
    app.apply_topics()
    records = _envelopes(WARMUP + n)
    reader = None
    with st_workers(ctx, app, "wo") as workers:
        try:
            reader = CountingReader(ctx.bootstrap, results_topic(ns), PARTITIONS)
            producer = Producer(producer_config(ctx.bootstrap))

            produce_all(producer, noop.topic, records[:WARMUP])
            producer.flush(30)
            reader.wait_for(WARMUP, 60)
            spies = start_spies(ctx, workers, "wo")
            try:
                with CpuMeter(ctx.broker_pid, [w.pid for w in workers]) as cpu:
                    t0 = time.perf_counter()
                    produce_all(producer, noop.topic, records[WARMUP:])
                    producer.flush(60)
                    t_sent = time.perf_counter()
                    t_done = reader.wait_for(WARMUP + n, 120)
            finally:
                for s in spies:
                    s.stop()
            mem = [proc_mem(w.pid) for w in workers]
        finally:
            if reader is not None:
                reader.close()
    return {
        "n": n,
        "send_s": t_sent - t0,
        "total_s": t_done - t0,
        "tasks_per_s": n / (t_done - t0),
        "cpu_s": cpu.used,
        "worker_mem_mib": mem,
    }


def run_latency(ctx: Ctx, count: int, rate: float) -> dict[str, Any]:
    ns = f"benchlat{uuid.uuid4().hex[:8]}"
    app = make_app(ns, ctx.bootstrap)
    noop = app.tasks["bench.noop"]
    try:
        app.apply_topics()
        with st_workers(ctx, app, "lat") as workers:
            warm = [noop.send(i) for i in range(WARMUP)]
            for h in warm:
                h.get(timeout=60)
            time.sleep(0.5)  # let the warm-up's commits and fetches settle: workers idle
            with CpuMeter(ctx.broker_pid, [w.pid for w in workers]) as idle_cpu:
                t_idle = time.perf_counter()
                time.sleep(IDLE_S)  # what joined, idle workers cost (fetch loop, heartbeats)
                idle_s = time.perf_counter() - t_idle
            handles: list[Any] = []
            sent_at: list[float] = []
            seen_at: list[float] = [0.0] * count

            def waiter() -> None:  # observes results in send order, as a client would
                i = 0
                while i < count:
                    if i < len(handles):
                        handles[i].get(timeout=60)
                        seen_at[i] = time.perf_counter()
                        i += 1
                    else:
                        time.sleep(0.0002)

            thread = threading.Thread(target=waiter, daemon=True)
            thread.start()
            interval = 1.0 / rate
            t_start = time.perf_counter()
            for i in range(count):
                delay = t_start + i * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                sent_at.append(time.perf_counter())
                handles.append(noop.send(i))
            t_last = time.perf_counter()
            thread.join(90)
            mem = [proc_mem(w.pid) for w in workers]
            recs = [h.record() for h in handles]
        done = [r.finished_at - r.created_at for r in recs]
        start = [r.started_at - r.created_at for r in recs]
        seen = [(seen_at[i] - sent_at[i]) * 1000 for i in range(count) if seen_at[i]]

        def summary(v: Sequence[float]) -> dict[str, float]:
            return {"p50": pct(v, 50), "p99": pct(v, 99), "max": max(v) if v else float("nan")}

        return {
            "count": count,
            "rate": rate,
            "achieved_rate": count / (t_last - t_start) if count > 1 else float("nan"),
            "enqueue_to_done_ms": summary(done),
            "enqueue_to_start_ms": summary(start),
            "send_to_get_ms": summary(seen),
            "worker_mem_mib": mem,
            "idle_cpu_pct": {k: 100 * v / idle_s for k, v in idle_cpu.used.items()},
        }
    finally:
        app.close()


def peak_running(recs: Sequence[ResultRecord]) -> dict[str, int]:
    """Per worker, the most tasks whose [started_at, finished_at) (ms) overlapped."""
    events: dict[str, list[tuple[int, int]]] = {}
    for r in recs:
        if r.worker_id and r.started_at and r.finished_at:
            ev = events.setdefault(r.worker_id, [])
            ev += [(r.started_at, 1), (r.finished_at, -1)]
    peaks: dict[str, int] = {}
    for wid, ev in events.items():
        ev.sort()  # at equal ms a finish (-1) sorts before a start (+1): no false overlap
        running = peak = 0
        for _, d in ev:
            running += d
            peak = max(peak, running)
        peaks[wid] = peak
    return peaks


def run_sleep(
    ctx: Ctx, n: int, task_name: str, tag: str, options: list[str], slots: int
) -> dict[str, Any]:
    """``n`` tasks that each sleep SLEEP_S to ``ctx.workers`` workers started with
    ``options``; ``slots`` = tasks one worker runs at once (for the ideal time)."""
    ns = f"bench{tag}{uuid.uuid4().hex[:8]}"
    app = make_app(ns, ctx.bootstrap)
    task = app.tasks[task_name]
    try:
        app.apply_topics()
        with st_workers(ctx, app, tag, options) as workers:
            warm = [task.send(i) for i in range(WARMUP)]
            for h in warm:
                h.get(timeout=60)
            time.sleep(0.5)  # let the warm-up's commits settle
            with CpuMeter(ctx.broker_pid, [w.pid for w in workers]) as cpu:
                sent = send_and_await(app, task, n)
            mem = [proc_mem(w.pid) for w in workers]
        recs = [r for r in (h.record() for h in sent.handles) if r is not None]
        start = [r.started_at - r.created_at for r in recs if r.started_at]
        run = [r.finished_at - r.started_at for r in recs if r.started_at and r.finished_at]
        first_start = min(r.started_at for r in recs if r.started_at)
        last_finish = max(r.finished_at for r in recs if r.finished_at)
        return {
            "n": n,
            "task": task_name,
            "worker_options": options,
            "slots_per_worker": slots,
            "ideal_s": n * SLEEP_S / (ctx.workers * slots),
            **sent.timings(),
            "first_start_to_last_finish_s": (last_finish - first_start) / 1000,
            "enqueue_to_start_ms": {"p50": pct(start, 50), "p99": pct(start, 99)},
            "run_ms": {"p50": pct(run, 50), "p99": pct(run, 99)},
            "tasks_per_worker": tasks_per_worker(recs),
            "peak_running_per_worker": sorted(peak_running(recs).values()),
            "cpu_s": cpu.used,
            "worker_mem_mib": mem,
        }
    finally:
        app.close()


# -- main ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def broker(bootstrap: str | None, engine: str = "tansu") -> Iterator[tuple[str, int | None, str]]:
    if bootstrap:
        yield bootstrap, None, f"existing Kafka at {bootstrap}"
        return
    if engine == "kafka":
        from streamtasks.dev.kafka import KAFKA_VERSION, KafkaBroker

        with KafkaBroker() as k:
            yield (
                k.bootstrap_servers,
                k.pid,
                f"Apache Kafka {KAFKA_VERSION} at {k.bootstrap_servers}",
            )
        return
    from streamtasks.dev.broker import EmbeddedBroker

    with EmbeddedBroker() as b:
        yield b.bootstrap_servers, b.pid, f"embedded Tansu at {b.bootstrap_servers} (memory)"


def _mem_str(mem: list[dict[str, float]]) -> str:
    return ", ".join(f"{m.get('VmRSS', 0):.0f} MiB (peak {m.get('VmHWM', 0):.0f})" for m in mem)


def _cpu_str(cpu: dict[str, float], n: int) -> str:
    parts = [f"{k} {v:.2f}s" for k, v in cpu.items()]
    total = sum(cpu.values())
    return ", ".join(parts) + f"; total {total:.2f}s = {1e6 * total / n:.0f} us/task"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="tasks for the throughput parts")
    ap.add_argument("--workers", type=int, default=2, help="worker processes")
    ap.add_argument("--concurrency", type=int, default=8, help="streamtasks worker threads")
    ap.add_argument(
        "--raw-repeats", type=int, default=3, help="raw baseline runs (median reported)"
    )
    ap.add_argument("--rate", type=float, default=200.0, help="tasks/s for the latency part")
    ap.add_argument("--latency-n", type=int, default=2000, help="tasks for the latency part")
    ap.add_argument("--bootstrap-servers", default=os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS"))
    ap.add_argument(
        "--broker",
        choices=["tansu", "kafka"],
        default="tansu",
        help="broker to start when no --bootstrap-servers: embedded Tansu or a local Apache Kafka",
    )
    ap.add_argument("--sleep-n", type=int, default=2000, help="tasks for the sleep parts")
    ap.add_argument(
        "--sleep-concurrency", type=int, default=50, help="--concurrency of the sleep part"
    )
    ap.add_argument(
        "--async-concurrency", type=int, default=100, help="--async-concurrency of the asleep part"
    )
    ap.add_argument(
        "--sleep-target", type=float, default=1.5, help="wall-time target of the sleep parts (s)"
    )
    ap.add_argument(
        "--parts",
        default="raw,rawavro,st,workers,latency,sleep,asleep",
        help="comma-separated subset to run",
    )
    ap.add_argument(
        "--overhead-variants",
        default="off,metrics",
        help=f"part 'overhead': variants to compare with off ({', '.join(overhead.VARIANTS)})",
    )
    ap.add_argument("--overhead-repeats", type=int, default=3, help="runs per overhead variant")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--py-spy", metavar="DIR", help="py-spy record the streamtasks workers")
    ap.add_argument("--native", action="store_true", help="py-spy --native (C frames too)")
    ap.add_argument("--idle", action="store_true", help="py-spy --idle (waiting threads too)")
    ap.add_argument(
        "--worker-args",
        default="",
        help="extra `streamtasks worker` options, e.g. --worker-args='--max-in-flight 5000'",
    )
    ap.add_argument("--log-dir", help="keep worker logs here (default: a temp dir)")
    args = ap.parse_args(argv)
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}

    spy_bin = None
    profile_dir = None
    if args.py_spy:
        spy_bin = shutil.which("py-spy") or shutil.which(
            "py-spy", path=str(Path(sys.executable).parent)
        )
        if spy_bin is None:
            ap.error("--py-spy needs py-spy on PATH (pip install py-spy)")
        profile_dir = Path(args.py_spy)
        profile_dir.mkdir(parents=True, exist_ok=True)

    payload_size, result_size = envelope_sizes()
    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="st-bench-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    t_all = time.perf_counter()
    with broker(args.bootstrap_servers, args.broker) as (bootstrap, broker_pid, where):
        ctx = Ctx(
            bootstrap,
            broker_pid,
            args.workers,
            args.concurrency,
            log_dir,
            spy_bin,
            profile_dir,
            args.native,
            args.idle,
            args.worker_args.split(),
        )
        probe = make_app("settings", bootstrap)
        settings = {
            "broker": where,
            "n": args.n,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "worker_args": args.worker_args,
            "partitions": PARTITIONS,
            # retry tiers and chords (BENCH_SIDE_PARTITIONS applies)
            "side_partitions": probe.settings.retry_partition_count,
            "consumer": {
                **CONSUMER_CONFIG,
                "enable.auto.offset.store": False,
                "enable.auto.commit": True,
                "auto.commit.interval.ms": 1000,
            },
            "producer": {"acks": "all", "enable.idempotence": True, "linger.ms": 5},
            # what the streamtasks clients really use (BENCH_CLIENT/WORKER_LINGER_MS apply)
            "streamtasks_linger_ms": {
                "client": probe.settings.client_producer()["linger.ms"],
                "worker": probe.settings.worker_producer()["linger.ms"],
            },
            "raw_payload_bytes": payload_size,
            "raw_result_bytes": result_size,
            "latency": {"count": args.latency_n, "rate": args.rate},
            "sleep": {
                "n": args.sleep_n,
                "sleep_s": SLEEP_S,
                "concurrency": args.sleep_concurrency,
                "async_concurrency": args.async_concurrency,
                "target_s": args.sleep_target,
            },
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        }
        results["settings"] = settings
        print("settings:")
        for k, v in settings.items():
            print(f"  {k}: {v}")
        print(f"  logs: {log_dir}")
        sys.stdout.flush()
        if "raw" in parts:
            results["raw"] = run_raw(ctx, args.n, payload_size, result_size, args.raw_repeats)
        if "rawavro" in parts:
            results["raw_avro_e2e"] = run_raw(
                ctx,
                args.n,
                payload_size,
                result_size,
                args.raw_repeats,
                avro=True,
                client_avro=True,
            )
            results["raw_avro_workers"] = run_raw(
                ctx, args.n, payload_size, result_size, args.raw_repeats, avro=True
            )
        if "st" in parts:
            results["streamtasks"] = run_streamtasks(ctx, args.n)
        if "workers" in parts:
            results["workers_only"] = run_workers_only(ctx, args.n)
        if "overhead" in parts:
            variants = [v.strip() for v in args.overhead_variants.split(",") if v.strip()]

            def once(extra: list[str]) -> dict[str, Any]:
                with_extra = dataclasses.replace(ctx, worker_args=[*ctx.worker_args, *extra])
                return run_workers_only(with_extra, args.n)

            results["overhead"] = overhead.measure(once, variants, args.overhead_repeats)
        if "latency" in parts:
            results["latency"] = run_latency(ctx, args.latency_n, args.rate)
        if "sleep" in parts:
            results["sleep"] = run_sleep(
                ctx,
                args.sleep_n,
                "bench.sleep20",
                "sleep",
                ["--concurrency", str(args.sleep_concurrency)],
                args.sleep_concurrency,
            )
        if "asleep" in parts:
            results["asleep"] = run_sleep(
                ctx,
                args.sleep_n,
                "bench.asleep20",
                "asleep",
                [
                    "--concurrency",
                    str(ctx.concurrency),
                    "--async-concurrency",
                    str(args.async_concurrency),
                ],
                args.async_concurrency,
            )
    results["wall_s"] = time.perf_counter() - t_all

    print()
    rows: list[tuple[str, str]] = []
    raw, st, lat = results.get("raw"), results.get("streamtasks"), results.get("latency")
    wo = results.get("workers_only")
    avro_e, avro_w = results.get("raw_avro_e2e"), results.get("raw_avro_workers")
    for label, r in (
        ("(a) raw confluent-kafka", raw),
        ("(a'e) raw + Avro, end to end", avro_e),
        ("(a'w) raw + Avro, workers", avro_w),
    ):
        if r:
            rows.append(
                (
                    label,
                    f"{r['tasks_per_s']:,.0f} tasks/s  (send {r['send_s']:.2f}s, "
                    f"all results {r['total_s']:.2f}s; median of "
                    + "/".join(f"{x / 1000:.0f}k" for x in sorted(r["all_runs_tasks_per_s"]))
                    + ")",
                )
            )
            rows.append(("    CPU during run", _cpu_str(r["cpu_s"], r["n"])))
    if st:
        rows.append(
            (
                "(b) streamtasks",
                f"{st['tasks_per_s']:,.0f} tasks/s  (send() x N {st['enqueue_s']:.2f}s, "
                f"flushed {st['send_s']:.2f}s, all results {st['total_s']:.2f}s)",
            )
        )
        rows.append(("    CPU during run", _cpu_str(st["cpu_s"], st["n"])))
        load = st["enqueue_to_done_under_load_ms"]
        rows.append(
            (
                "    under load",
                f"enqueue->done p50 {load['p50']:.0f} ms, p99 {load['p99']:.0f} ms; "
                f"tasks per worker {st['tasks_per_worker']}; wrong results {st['wrong_results']}",
            )
        )
    if wo:
        rows.append(
            (
                "(b') streamtasks workers only",
                f"{wo['tasks_per_s']:,.0f} tasks/s  (pre-encoded envelopes by a bare producer "
                f"{wo['send_s']:.2f}s, all results {wo['total_s']:.2f}s)",
            )
        )
        rows.append(("    CPU during run", _cpu_str(wo["cpu_s"], wo["n"])))
    if raw and st:
        rows.append(("(c) ratio streamtasks/raw", f"{st['tasks_per_s'] / raw['tasks_per_s']:.2f}"))
    if results.get("overhead"):
        rows.extend(overhead.rows(results["overhead"]["summary"]))
    if raw and wo:
        rows.append(
            ("(c') ratio workers-only/raw", f"{wo['tasks_per_s'] / raw['tasks_per_s']:.2f}")
        )
    if (avro_e and st) or (avro_w and wo):
        e = f"{st['tasks_per_s'] / avro_e['tasks_per_s']:.2f}" if avro_e and st else "-"
        w = f"{wo['tasks_per_s'] / avro_w['tasks_per_s']:.2f}" if avro_w and wo else "-"
        rows.append(("(c'') ratio b/a'e, b'/a'w", f"{e}, {w}"))
    if lat:
        d, s, g = lat["enqueue_to_done_ms"], lat["enqueue_to_start_ms"], lat["send_to_get_ms"]
        rows.append(
            (
                f"(d) latency @{lat['rate']:.0f}/s",
                f"enqueue->done p50 {d['p50']:.0f} ms, p99 {d['p99']:.0f} ms (max {d['max']:.0f}); "
                f"enqueue->start p50 {s['p50']:.0f} ms, p99 {s['p99']:.0f} ms",
            )
        )
        rows.append(
            (
                "",
                f"send->get() returned p50 {g['p50']:.1f} ms, p99 {g['p99']:.1f} ms; "
                f"{lat['count']} tasks at {lat['achieved_rate']:.0f}/s achieved",
            )
        )
    if lat:
        idle = lat["idle_cpu_pct"]
        rows.append(
            (
                "    idle CPU",
                f"{ctx.workers} joined idle workers {idle['workers']:.1f}% of a core"
                + (f", broker {idle['broker']:.1f}%" if "broker" in idle else "")
                + f" (over {IDLE_S:.0f} s)",
            )
        )
    for key, label, how in (
        ("sleep", "(f) sleep 20 ms", "time.sleep"),
        ("asleep", "(f') async sleep 20 ms", "asyncio.sleep"),
    ):
        sl = results.get(key)
        if not sl:
            continue
        target = args.sleep_target
        verdict = "met" if sl["total_s"] < target else "NOT met"
        rows.append(
            (
                label,
                f"{sl['total_s']:.2f} s first send -> last result for {sl['n']} x {how}(0.02), "
                f"{ctx.workers} workers {' '.join(sl['worker_options'])} "
                f"(target < {target:.1f} s: {verdict}; ideal {sl['ideal_s']:.2f} s)",
            )
        )
        e2s, run = sl["enqueue_to_start_ms"], sl["run_ms"]
        rows.append(
            (
                "",
                f"send() x N {sl['enqueue_s']:.2f}s, flushed {sl['send_s']:.2f}s; first start -> "
                f"last finish {sl['first_start_to_last_finish_s']:.2f}s; enqueue->start "
                f"p50 {e2s['p50']:.0f} ms, p99 {e2s['p99']:.0f} ms; task run p50 "
                f"{run['p50']:.0f} ms, p99 {run['p99']:.0f} ms",
            )
        )
        rows.append(
            (
                "",
                f"tasks per worker {sl['tasks_per_worker']}; peak running at once per worker "
                f"{sl['peak_running_per_worker']}; wrong results {sl['wrong_results']}",
            )
        )
        rows.append(("    CPU during run", _cpu_str(sl["cpu_s"], sl["n"])))
    mem_rows = []
    if st:
        mem_rows.append(f"streamtasks after throughput: {_mem_str(st['worker_mem_mib'])}")
        mem_rows.append(f"client after throughput: {_mem_str([st['client_mem_mib']])}")
    if wo:
        mem_rows.append(f"streamtasks after workers-only: {_mem_str(wo['worker_mem_mib'])}")
    if lat:
        mem_rows.append(f"streamtasks after latency: {_mem_str(lat['worker_mem_mib'])}")
    if results.get("sleep"):
        mem_rows.append(f"streamtasks after sleep: {_mem_str(results['sleep']['worker_mem_mib'])}")
    if results.get("asleep"):
        mem_rows.append(
            f"streamtasks after async sleep: {_mem_str(results['asleep']['worker_mem_mib'])}"
        )
    if raw:
        mem_rows.append(f"raw baseline: {_mem_str(raw['worker_mem_mib'])}")
    for i, text in enumerate(mem_rows):
        rows.append(("(e) worker RSS" if i == 0 else "", text))
    width = max(len(r[0]) for r in rows) if rows else 0
    for label, value in rows:
        print(f"{label:<{width}}  {value}")
    print(f"\nwall time {results['wall_s']:.1f}s")
    if profile_dir:
        print(f"py-spy profiles (collapsed stacks) in {profile_dir}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
