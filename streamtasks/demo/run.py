"""``streamtasks demo``: the main job end to end on the embedded broker.

Starts the embedded broker (unless a bootstrap address is configured), a local SMTP sink and
N worker processes; sends a mixed batch (thumbnails, e-mails, aggregations, a few bad inputs
that must fail cleanly); shows progress; prints a summary; stops everything.
"""

from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from streamtasks.asyncresult import AsyncResult
from streamtasks.dev.processes import WorkerProcess, wait_for_workers
from streamtasks.errors import BrokerError
from streamtasks.wire.envelope import ResultRecord, TaskStatus
from streamtasks.workflows import chord, group

__all__ = ["run_demo"]

console = Console(stderr=False)


@contextlib.contextmanager
def _broker() -> Iterator[str]:
    configured = os.environ.get("STREAMTASKS_BOOTSTRAP_SERVERS")
    if configured:
        console.print(f"using Kafka at [bold]{configured}[/]")
        yield configured
        return
    from streamtasks.dev.broker import EmbeddedBroker

    with EmbeddedBroker() as broker:
        console.print(f"embedded broker (Tansu) at [bold]{broker.bootstrap_servers}[/]")
        yield broker.bootstrap_servers


@contextlib.contextmanager
def _workers(n: int, env: dict[str, str], log_dir: Path) -> Iterator[list[WorkerProcess]]:
    procs = [
        WorkerProcess(
            "streamtasks.demo.tasks:app",
            bootstrap=env["STREAMTASKS_BOOTSTRAP_SERVERS"],
            env=env,
            args=["--concurrency", "8"],
            log_path=str(log_dir / f"worker-{i}.log"),
        )
        for i in range(n)
    ]
    try:
        for p in procs:
            p.start()
        yield procs
    finally:
        for p in procs:
            p.terminate(timeout=30)


def _batch(n: int, rng: random.Random) -> Iterator[tuple[str, Any]]:
    from streamtasks.demo.tasks import Email, Image, Pattern

    patterns = list(Pattern)
    for i in range(n):
        kind = i % 3
        if kind == 0:
            w, h = rng.choice([(128, 96), (96, 96), (160, 120)])
            if i % 300 == 0:
                w = 0  # a corrupt image: fails cleanly
            yield "thumbnail", Image(f"img-{i:05d}", w, h, rng.choice(patterns))
        elif kind == 1:
            to = f"user{i}@example.com" if i % 97 else f"user{i}-at-example.com"  # some invalid
            yield "email", Email(to, f"Your report #{i}", "Hello!\n" * rng.randint(1, 20))
        else:
            yield "aggregate", [rng.gauss(100, 15) for _ in range(rng.randint(1, 200))]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run_demo(*, n_tasks: int = 2000, n_workers: int = 2, seed: int = 1) -> int:
    """Run the demo; returns the process exit code (0 = every task accounted for)."""
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="streamtasks-demo-") as tmp, _broker() as bootstrap:
        from streamtasks.demo.smtp_sink import SmtpSink

        os.environ["STREAMTASKS_BOOTSTRAP_SERVERS"] = bootstrap
        out_dir = Path(tmp) / "thumbnails"
        with SmtpSink() as sink:
            env = {
                **os.environ,
                "STREAMTASKS_DEMO_SMTP": sink.address,
                "STREAMTASKS_DEMO_OUT": str(out_dir),
            }
            os.environ.update(env)
            from streamtasks.demo import tasks

            app = tasks.app
            app.apply_topics()
            with _workers(n_workers, env, Path(tmp)) as procs:
                with console.status(f"starting {n_workers} workers"):
                    try:
                        partitions = app.worker_partitions()
                        wait_for_workers(procs, partitions, timeout=60)
                    except RuntimeError as exc:
                        raise BrokerError(str(exc)) from exc
                console.print(f"{n_workers} workers joined [bold]{app.settings.worker_group()}[/]")
                summary = _send_and_wait(app, n_tasks, rng)
            emails = sink.received
        thumbs = len(list(out_dir.glob("*.png"))) if out_dir.exists() else 0
        app.close()
    return _report(summary, n_tasks, emails, thumbs)


def _send_and_wait(app: Any, n: int, rng: random.Random) -> dict[str, Any]:
    from streamtasks.demo import tasks

    senders: dict[str, Any] = {
        "thumbnail": tasks.render_thumbnail,
        "email": tasks.send_email,
        "aggregate": tasks.aggregate,
    }
    handles: list[tuple[str, AsyncResult]] = []
    records: list[tuple[str, ResultRecord]] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console) as progress:
        sent = progress.add_task("sending", total=n)
        done = progress.add_task("finished", total=n)
        t0 = time.monotonic()
        for kind, arg in _batch(n, rng):
            handles.append((kind, senders[kind].apply_async((arg,))))
            progress.advance(sent)
        app.flush()
        for kind, h in handles:
            h.get(timeout=120, propagate=False)
            rec = h.record()
            assert rec is not None
            records.append((kind, rec))
            progress.advance(done)
        elapsed = time.monotonic() - t0
    # A chord: 20 batches aggregated in parallel, their summaries combined by one callback.
    batches = [[rng.gauss(100, 15) for _ in range(100)] for _ in range(20)]
    report = chord(group(tasks.aggregate.s(b) for b in batches), tasks.combine.s())
    with console.status("chord: 20 aggregates, then combine"):
        combined = report.apply_async().get(timeout=120)
    return {"records": records, "elapsed": elapsed, "chord": combined}


def _report(summary: dict[str, Any], n: int, emails: int, thumbs: int) -> int:
    records: list[tuple[str, ResultRecord]] = summary["records"]
    table = Table(title="streamtasks demo")
    for col in ("task", "done", "failed", "p50 ms", "p99 ms"):
        table.add_column(col, justify="right" if col != "task" else "left")
    for kind in ("thumbnail", "email", "aggregate", "all"):
        recs = [r for k, r in records if kind in (k, "all")]
        lat = [float((r.finished_at or 0) - r.created_at) for r in recs]
        ok = sum(r.status is TaskStatus.SUCCESS for r in recs)
        table.add_row(
            kind, str(ok), str(len(recs) - ok), f"{_pct(lat, 0.5):.0f}", f"{_pct(lat, 0.99):.0f}"
        )
    console.print(table)
    ok = sum(r.status is TaskStatus.SUCCESS for _, r in records)
    failed = [r for _, r in records if r.status is not TaskStatus.SUCCESS]
    console.print(
        f"{len(records)}/{n} tasks finished in {summary['elapsed']:.1f}s "
        f"([bold]{len(records) / summary['elapsed']:.0f} tasks/s[/]); {ok} succeeded, "
        f"{len(failed)} failed as intended (bad inputs); {emails} e-mails reached the SMTP sink, "
        f"{thumbs} thumbnails written"
    )
    for r in failed[:3]:
        assert r.error is not None
        console.print(f"  e.g. {r.task} failed: {r.error.type}: {r.error.message}")
    combined = summary["chord"]
    console.print(
        f"chord: 20 aggregate batches joined by demo.combine: {combined.count} values, "
        f"mean {combined.mean:.1f}, max {combined.maximum:.1f}"
    )
    expected_emails = sum(1 for k, r in records if k == "email" and r.status is TaskStatus.SUCCESS)
    consistent = len(records) == n and emails >= expected_emails and combined.count == 2000
    return 0 if consistent else 1
