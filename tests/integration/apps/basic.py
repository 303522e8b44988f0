"""A small app used by the integration tests; workers import it as tests.integration.apps.basic:app.

The namespace comes from STREAMTASKS_NAMESPACE in worker processes, so each test gets its
own topics and consumer group.
"""

from __future__ import annotations

import asyncio
import enum
import os
import time
from dataclasses import dataclass
from datetime import datetime

from streamtasks import App, Reject, RetryPolicy, current_task
from streamtasks.workflows import TaskFailure


class Shape(enum.Enum):
    SQUARE = "square"
    CIRCLE = "circle"


@dataclass(frozen=True)
class Item:
    name: str
    shape: Shape
    size: float
    tags: list[str]
    made: datetime


@dataclass(frozen=True)
class Span:
    """When and where a task ran (wall clock ns, so comparable across processes)."""

    start_ns: int
    end_ns: int
    partition: int
    pid: int


@dataclass(frozen=True)
class Summary:
    label: str
    area: float
    tag_count: dict[str, int]


def build(namespace: str | None = None, bootstrap_servers: str | None = None) -> App:
    app = App(
        "itest",
        namespace=namespace,
        bootstrap_servers=bootstrap_servers,
        partitions=int(os.environ.get("ITEST_PARTITIONS", "6")),
        retry_tiers=(1, 2, 5),
        consumer_config={
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 1000,
            "fetch.wait.max.ms": 10,
        },
    )

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="fail")
    def fail(message: str) -> int:
        raise ValueError(message)

    @app.task(name="blob")
    def blob(n: int) -> str:
        return "x" * n

    @app.task(name="echo_len")
    def echo_len(text: str) -> int:
        return len(text)

    @app.task(name="work")
    def work(i: int, sleep_ms: int = 0) -> int:
        if sleep_ms:
            time.sleep(sleep_ms / 1000)
        return i

    @app.task(name="summarize")
    def summarize(item: Item, factor: float | None = None) -> Summary:
        side = item.size * (factor or 1.0)
        area = side * side if item.shape is Shape.SQUARE else 3.14159 * side * side
        counts: dict[str, int] = {}
        for t in item.tags:
            counts[t] = counts.get(t, 0) + 1
        return Summary(f"{item.name}@{item.made.year}", area, counts)

    @app.task(name="traced")
    def traced(tag: str) -> str:
        """The traceparent this task continues ("" without one)."""
        return current_task().traceparent or ""

    @app.task(name="traced_next")
    def traced_next(before: str) -> list[str]:
        """The step before's traceparent, then this step's own."""
        return [before, current_task().traceparent or ""]

    @app.task(name="traced_all")
    def traced_all(before: list[str]) -> list[str]:
        """A chord callback: its members' traceparents, then its own."""
        return [*before, current_task().traceparent or ""]

    @app.task(name="flaky", retry=RetryPolicy(max_attempts=5, backoff=1.0, factor=2.0, jitter=0))
    def flaky(fail_times: int) -> int:
        attempt = current_task().attempt
        if attempt <= fail_times:
            raise ConnectionError(f"attempt {attempt} failed")
        return attempt

    @app.task(name="doomed", retry=RetryPolicy(max_attempts=3, backoff=0.5, jitter=0))
    def doomed(tag: str) -> None:
        raise RuntimeError(f"{tag} can never work")

    @app.task(name="slow_retry", retry=RetryPolicy(max_attempts=2, backoff=3.0, jitter=0))
    def slow_retry(tag: str) -> None:
        raise RuntimeError(f"{tag} fails")

    @app.task(name="needs_flag", retry=RetryPolicy(max_attempts=2, backoff=0.2, jitter=0))
    def needs_flag(path: str, i: int) -> int:
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path} is missing")
        with open(path + ".runs", "a") as runs:  # each successful run leaves a line
            runs.write(f"{i}\n")
        return i

    @app.task(name="broken_while")
    def broken_while(flag: str, i: int) -> int:
        """Odd i fail (no retries: FAILURE) while the flag file exists; runs leave a line."""
        if i % 2 == 1 and os.path.exists(flag):
            raise ValueError(f"{i}: broken while {flag} exists")
        with open(flag + ".runs", "a") as runs:
            runs.write(f"{i}\n")
        return i

    @app.task(name="span")
    def span(key: str, seq: int, sleep_ms: int) -> Span:
        start = time.time_ns()
        time.sleep(sleep_ms / 1000)
        return Span(start, time.time_ns(), current_task().partition, os.getpid())

    @app.task(name="async_span")
    async def async_span(i: int, sleep_ms: int) -> Span:
        start = time.time_ns()
        await asyncio.sleep(sleep_ms / 1000)
        return Span(start, time.time_ns(), current_task().partition, os.getpid())

    @app.task(name="async_cleanup", soft_time_limit=0.5)
    async def async_cleanup(marker: str, sleep_s: float) -> str:
        try:
            await asyncio.sleep(sleep_s)
            return "finished"
        finally:
            with open(marker, "a") as f:  # cleanup runs even when the soft limit fires
                f.write("cleaned\n")

    @app.task(name="cpu_pid", pool="process")
    def cpu_pid(n: int) -> int:
        total = sum(i * i for i in range(n))
        assert total >= 0
        return os.getpid()

    @app.task(
        name="stuck",
        pool="process",
        time_limit=1.0,
        retry=RetryPolicy(max_attempts=2, backoff=0.2, jitter=0),
    )
    def stuck(tag: str) -> None:
        time.sleep(600)

    @app.task(name="soft_stop", pool="process", soft_time_limit=0.5, time_limit=10)
    def soft_stop(marker: str) -> str:
        try:
            time.sleep(30)
            return "finished"
        finally:
            with open(marker, "a") as f:
                f.write("cleaned\n")

    @app.task(name="marked_sleep")
    def marked_sleep(marker: str, sleep_ms: int) -> None:
        with open(marker, "a") as f:  # one line per start, written before the work
            f.write("started\n")
        time.sleep(sleep_ms / 1000)

    @app.task(name="tracked", track_started=True)
    def tracked(x: int) -> int:
        return x * 10

    @app.task(name="explode")
    def explode(x: int) -> int:
        raise ValueError(f"step got {x}")

    @app.task(name="rejecting")
    def rejecting(reason: str) -> None:
        raise Reject(reason)

    # -- chords and error callbacks: each run leaves a line in a file, to count runs -------
    @app.task(name="tally")
    def tally(values: list[int], path: str) -> int:
        with open(path, "a") as f:
            f.write(f"{current_task().id} {len(values)}\n")
        return sum(values)

    @app.task(name="member", retry=RetryPolicy(max_attempts=3, backoff=0.2, jitter=0, factor=1.0))
    def member(i: int, sleep_ms: int, fail_first: bool) -> int:
        if fail_first and current_task().attempt == 1:
            raise ConnectionError(f"member {i}: first attempt fails")
        time.sleep(sleep_ms / 1000)
        return i

    @app.task(name="note_failure")
    def note_failure(failure: TaskFailure, path: str) -> None:
        with open(path, "a") as f:
            f.write(
                f"{failure.task_id} {failure.task} {failure.status} {failure.error_type} "
                f"{failure.attempts}\n"
            )

    return app


app = build()
