"""Prometheus metrics of real worker processes, scraped with a real HTTP GET (issue 15, part 4).

Given a worker started with ``--metrics-port`` and a known mix of tasks (successes, failures,
retries, dead letters for two reasons), when they have run, then one scrape of ``/metrics``
parsed by ``prometheus_client.parser`` shows exactly those counts; with ``--processes 2`` one
scrape of the supervisor's port shows the sum over both children.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.request
from collections.abc import Callable

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from streamtasks import App
from streamtasks.testing import WorkerProcess
from streamtasks.wire.topics import task_topic
from tests.integration.conftest import APP_SPEC, ROOT, StartWorkers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the series of ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def _scrape_until(port: int, done: Callable[[Samples], bool], timeout: float = 60) -> Samples:
    """Scrape until ``done`` holds (the hooks run just after the outputs' acknowledgements)."""
    deadline = time.monotonic() + timeout
    samples: Samples = {}
    while time.monotonic() < deadline:
        try:
            samples = _scrape(port)
        except OSError:  # not listening yet
            samples = {}
        if samples and done(samples):
            return samples
        time.sleep(0.1)
    raise AssertionError(f"metrics never reached the expected counts; last scrape: {samples}")


def _wait_for_children(w: WorkerProcess, children: int, partitions: int) -> None:
    """Until ``children`` worker processes (their log lines share the supervisor's log) own
    all ``partitions`` between them, each some."""
    owned: dict[str, set[str]] = {}
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert w.is_alive(), w.log_text()[-3000:]
        owned.clear()
        for line in w.log_text().splitlines():
            if not line.startswith("{"):
                continue
            event = json.loads(line)
            mine = owned.setdefault(event.get("worker_id", "?"), set())
            if event.get("event") == "partitions assigned":
                mine |= set(event["partitions"])
            elif event.get("event") in ("partitions revoked", "partitions lost"):
                mine -= set(event["partitions"])
        busy = [p for p in owned.values() if p]
        if len(busy) == children and sum(len(p) for p in busy) == partitions:
            return
        time.sleep(0.1)
    raise AssertionError(f"the children never shared the partitions: {owned}")


def test_a_scrape_counts_what_the_worker_did(
    app: App, kafka_bootstrap: str, ns: str, start_workers: StartWorkers
) -> None:
    # Given a worker serving metrics, sampling lag every 0.5 s
    port = _free_port()
    start_workers(1, "--metrics-port", str(port), "--metrics-lag-interval", "0.5")
    # When it runs 20 successes, 5 failures (no retries), 2 tasks that fail once then succeed,
    # one that fails until it is dead-lettered (3 attempts) and one undecodable record
    for i in range(20):
        app.tasks["add"].send(i, 1)
    for i in range(5):
        app.tasks["fail"].send(f"boom {i}")
    for _ in range(2):
        app.tasks["flaky"].send(1)
    app.tasks["doomed"].send("x")
    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    raw.produce(task_topic(ns, "default"), value=b"\x00not avro")
    assert raw.flush(10) == 0
    app.flush(10)

    def finished(s: Samples) -> bool:
        return _value(s, "streamtasks_tasks_total") >= 20 + 5 + 2 * 2 + 3 + 1

    samples = _scrape_until(port, finished)
    # Then the counters are the test's counts
    total = "streamtasks_tasks_total"
    assert _value(samples, total, status="success") == 22
    assert _value(samples, total, task="add", queue="default", status="success") == 20
    assert _value(samples, total, task="fail", status="failure") == 5
    assert _value(samples, total, status="retry") == 4  # flaky x2 once each, doomed twice
    assert _value(samples, total, status="dead") == 2
    # the backoffs (1 s flaky; 0.5 s, 1 s doomed) all fit the first tier (1 s)
    assert _value(samples, "streamtasks_retries_total", queue="default", tier="1") == 4
    assert _value(samples, "streamtasks_retries_total") == 4
    dead = "streamtasks_dead_letters_total"
    assert _value(samples, dead, queue="default", reason="max-attempts") == 1
    assert _value(samples, dead, queue="default", reason="undecodable") == 1
    assert _value(samples, "streamtasks_task_duration_seconds_count", task="add") == 20
    assert _value(samples, "streamtasks_task_duration_seconds_count") == 33  # every record
    assert _value(samples, "streamtasks_tasks_in_flight", queue="default") == 0
    assert _value(samples, "streamtasks_rebalances_total") >= 1
    assert _value(samples, "streamtasks_commits_total") > 0
    # and lag is sampled for the queue's partitions (the values depend on commit timing)
    topic = task_topic(ns, "default")

    def lag_sampled(s: Samples) -> bool:
        names = {n for n, ls in s if dict(ls).get("topic") == topic}
        return {"streamtasks_consumer_lag", "streamtasks_consumer_lag_seconds"} <= names

    lagged = _scrape_until(port, lag_sampled, timeout=10)
    assert all(v >= 0 for (n, _), v in lagged.items() if n.startswith("streamtasks_consumer_lag"))


def test_one_scrape_sums_two_worker_processes(
    app: App, kafka_bootstrap: str, ns: str, partitions: int
) -> None:
    # Given a supervisor with 2 worker processes serving the metrics port
    port = _free_port()
    w = WorkerProcess(
        APP_SPEC,
        bootstrap=kafka_bootstrap,
        env={"STREAMTASKS_NAMESPACE": ns},
        args=("--processes", "2", "--metrics-port", str(port), "--metrics-lag-interval", "1"),
        cwd=str(ROOT),
    ).start()
    try:
        _wait_for_children(w, 2, partitions * len(app.worker_topics()))
        # When 40 successes and 4 failures run, keyed over all partitions
        for i in range(40):
            app.tasks["add"].apply_async((i, 1), key=f"k{i}")
        for i in range(4):
            app.tasks["fail"].apply_async((f"boom {i}",), key=f"f{i}")
        app.flush(10)
        # Then one scrape shows the sum over both children
        samples = _scrape_until(
            port, lambda s: _value(s, "streamtasks_tasks_total") >= 44, timeout=60
        )
        assert _value(samples, "streamtasks_tasks_total", status="success") == 40
        assert _value(samples, "streamtasks_tasks_total", status="failure") == 4
        assert _value(samples, "streamtasks_task_duration_seconds_count") == 44
        assert _value(samples, "streamtasks_rebalances_total") >= 2  # one per child at least
        assert _value(samples, "streamtasks_tasks_in_flight") == 0
    finally:
        code = w.terminate(timeout=30)
    assert code == 0, w.log_text()[-3000:]
    # and both children ran some of them: the scrape was their sum
    stopped = [
        json.loads(line)
        for line in w.log_text().splitlines()
        if line.startswith("{") and '"worker stopped"' in line
    ]
    assert len(stopped) == 2, w.log_text()[-3000:]
    assert sum(e["succeeded"] for e in stopped) == 40
    assert all(e["succeeded"] > 0 for e in stopped), stopped
