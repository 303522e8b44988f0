"""Fixtures for integration tests: a fresh namespace (topics + group) per test, worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from streamtasks import App
from streamtasks.testing import ENV_TEST_BROKER, WorkerProcess, unique_name, wait_for_workers
from streamtasks.worker import Worker
from tests.integration.apps.basic import build

ROOT = Path(__file__).resolve().parents[2]
APP_SPEC = "tests.integration.apps.basic:app"

#: The fixtures through which a test meets the session's broker. A test that uses none of them
#: (it starts its own broker, or uses none) does the same in both passes of `make test`, so it
#: runs once, in the Tansu pass.
_SESSION_BROKER_FIXTURES = frozenset({"kafka_bootstrap", "broker_kind", "kafka_broker"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get(ENV_TEST_BROKER, "").lower() != "kafka":
        return
    once = pytest.mark.skip(reason="uses no session broker: runs once, in the Tansu pass")
    for item in items:
        if not _SESSION_BROKER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(once)


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``python -m streamtasks ARGS`` from the repository root, output captured."""
    return subprocess.run(
        [sys.executable, "-m", "streamtasks", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def run_burst_worker(bootstrap: str, ns: str, *args: str, timeout: float = 120) -> None:
    """Run one ``worker --burst`` until it exits by itself, drained (no sleeps, no polling):
    every task queued, retried or sent on by a task has run when this returns."""
    w = WorkerProcess(
        APP_SPEC,
        bootstrap=bootstrap,
        env={"STREAMTASKS_NAMESPACE": ns},
        args=("--burst", *args),
        cwd=str(ROOT),
    ).start()
    try:
        code = w.wait(timeout)
        assert code == 0, f"burst worker exited with {code}:\n{w.log_text()[-3000:]}"
    finally:
        w.kill()


@pytest.fixture
def ns() -> str:
    return unique_name("it")


@pytest.fixture
def partitions(request: pytest.FixtureRequest) -> int:
    """Partitions per topic; ``@pytest.mark.partitions(1)`` overrides the default 6."""
    marker = request.node.get_closest_marker("partitions")
    return int(marker.args[0]) if marker else 6


@pytest.fixture
def app(
    kafka_bootstrap: str, ns: str, partitions: int, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    monkeypatch.setenv("ITEST_PARTITIONS", str(partitions))  # for the worker processes too
    a = build(namespace=ns, bootstrap_servers=kafka_bootstrap)
    a.apply_topics()
    yield a
    a.close()


StartWorkers = Callable[..., list[WorkerProcess]]


@pytest.fixture
def start_workers(kafka_bootstrap: str, ns: str, app: App) -> Iterator[StartWorkers]:
    """``start_workers(2, "--concurrency", "8")``: start and wait until all joined the group."""
    started: list[WorkerProcess] = []

    def start(n: int = 1, *args: str, wait: bool = True) -> list[WorkerProcess]:
        batch = [
            WorkerProcess(
                APP_SPEC,
                bootstrap=kafka_bootstrap,
                env={"STREAMTASKS_NAMESPACE": ns},
                args=args,
                cwd=str(ROOT),
            ).start()
            for _ in range(n)
        ]
        started.extend(batch)
        if wait:
            alive = [w for w in started if w.is_alive()]
            wait_for_workers(alive, partitions=app.worker_partitions())
        return batch

    yield start
    for w in started:
        w.kill()


@pytest.fixture
def run_worker(app: App) -> Iterator[Callable[..., Worker]]:
    """An in-process worker on a thread (so a test can break its internals); stopped after."""
    started: list[tuple[Worker, threading.Thread]] = []

    def start(**options: Any) -> Worker:
        worker = Worker(app, concurrency=4, app_spec=APP_SPEC, process_concurrency=1, **options)
        thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
        thread.start()
        assert worker.ready.wait(60), "the worker was assigned no partitions"
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.stop(force=True)
        thread.join(30)
