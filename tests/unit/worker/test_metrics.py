"""The metrics hook, the /metrics endpoint, the supervisor's options and the Grafana dashboard."""

from __future__ import annotations

import json
import re
import socket
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from streamtasks import App
from streamtasks.errors import ConfigError
from streamtasks.worker import Worker
from streamtasks.worker.hooks import HookSet, TaskDone
from streamtasks.worker.metrics import WorkerMetrics, exposed_names, serve_metrics
from streamtasks.worker.outcomes import Record
from streamtasks.worker.supervisor import Supervisor, child_args

DASHBOARD = Path(__file__).resolve().parents[3] / "deploy" / "grafana" / "streamtasks-workers.json"
TOPIC = "streamtasks.tasks.default"


def _rec(offset: int, task: bytes = b"add", topic: str = TOPIC, ts: int = 1_000) -> Record:
    return Record(topic, 0, offset, None, b"v", [("st-task", task)], ts)


def _value(m: WorkerMetrics, name: str, **labels: str) -> float | None:
    return m.registry.get_sample_value(name, labels)


def test_the_hook_counts_outcomes_by_task_queue_tier_and_reason() -> None:
    # Given the metrics hook behind a hook set
    m = WorkerMetrics(CollectorRegistry())
    hooks = HookSet([m])
    retry_topic = f"{TOPIC}.retry.2"
    # When records are received and finish in each way
    for i, (outcome, detail, topic) in enumerate(
        [
            ("success", None, TOPIC),
            ("success", None, TOPIC),
            ("retry", "2", TOPIC),
            ("dead", "max-attempts", retry_topic),
            ("failure", None, TOPIC),
        ]
    ):
        rec = _rec(i, topic=topic)
        hooks.received(rec)
        hooks.finished(rec, outcome)
        hooks.task_done(rec, outcome, 0.02, detail)
    hooks.received(_rec(9))  # still running
    hooks.committed([(TOPIC, 0, 3)])
    hooks.assigned([(TOPIC, 0)])
    # Then every counter says so, the retry tier's records count under their queue
    assert _value(m, "streamtasks_tasks_total", task="add", queue="default", status="success") == 2
    assert _value(m, "streamtasks_tasks_total", task="add", queue="default", status="dead") == 1
    assert _value(m, "streamtasks_retries_total", queue="default", tier="2") == 1
    assert _value(m, "streamtasks_dead_letters_total", queue="default", reason="max-attempts") == 1
    count = _value(m, "streamtasks_task_duration_seconds_count", task="add", queue="default")
    assert count == 5
    assert _value(m, "streamtasks_tasks_in_flight", queue="default") == 1
    assert _value(m, "streamtasks_commits_total") == 1
    assert _value(m, "streamtasks_rebalances_total") == 1


def test_revoking_a_partition_takes_its_in_flight_and_lag_away() -> None:
    m = WorkerMetrics(CollectorRegistry())
    hooks = HookSet([m])
    hooks.assigned([(TOPIC, 0), (TOPIC, 1)])
    hooks.received(_rec(0))
    hooks.received(_rec(1))
    hooks.consumer_stats(_stats(lag=5, hi=10, position=8))
    assert _value(m, "streamtasks_consumer_lag", topic=TOPIC, partition="0") == 5
    hooks.revoked([(TOPIC, 0)], lost=False)
    assert _value(m, "streamtasks_tasks_in_flight", queue="default") == 0
    assert _value(m, "streamtasks_consumer_lag", topic=TOPIC, partition="0") is None
    hooks.task_done(_rec(0), "success", 0.01, None)  # finishing after the revoke: no negative
    assert _value(m, "streamtasks_tasks_in_flight", queue="default") == 0
    hooks.consumer_stats(_stats(lag=5, hi=10, position=8))  # librdkafka may still report it
    assert _value(m, "streamtasks_consumer_lag", topic=TOPIC, partition="0") is None


def _stats(*, lag: int, hi: int, position: int) -> str:
    partitions = {
        "-1": {"consumer_lag": -1},
        "0": {"consumer_lag": lag, "hi_offset": hi, "app_offset": position},
        "1": {"consumer_lag": 2, "hi_offset": 9, "app_offset": 7},  # ours only if assigned
    }
    return json.dumps({"topics": {TOPIC: {"partitions": partitions}}})


def test_lag_seconds_is_the_age_of_the_last_record_while_behind_and_zero_when_caught_up() -> None:
    m = WorkerMetrics(CollectorRegistry())
    hooks = HookSet([m])
    hooks.assigned([(TOPIC, 0)])  # partition 1 is not ours
    hooks.consumer_stats(_stats(lag=3, hi=3, position=0))  # behind, nothing received yet
    assert _value(m, "streamtasks_consumer_lag", topic=TOPIC, partition="0") == 3
    assert _value(m, "streamtasks_consumer_lag_seconds", topic=TOPIC, partition="0") is None
    hooks.received(_rec(0, ts=1_000))  # a record from 1970: very old
    hooks.consumer_stats(_stats(lag=3, hi=3, position=1))
    age = _value(m, "streamtasks_consumer_lag_seconds", topic=TOPIC, partition="0")
    assert age is not None and age > 1e9
    hooks.consumer_stats(_stats(lag=1, hi=3, position=3))  # all fetched: nothing unconsumed
    assert _value(m, "streamtasks_consumer_lag_seconds", topic=TOPIC, partition="0") == 0
    assert _value(m, "streamtasks_consumer_lag", topic=TOPIC, partition="1") is None


def test_statistics_are_asked_for_only_when_a_hook_wants_them() -> None:
    assert HookSet([]).stats_interval_ms is None
    assert HookSet([WorkerMetrics(CollectorRegistry(), lag_interval=0.5)]).stats_interval_ms == 500
    with pytest.raises(ConfigError, match="lag interval"):
        WorkerMetrics(CollectorRegistry(), lag_interval=0)


def test_task_done_names_a_record_without_a_task_header_unknown() -> None:
    seen: list[TaskDone] = []

    class Watch(WorkerMetrics):
        def on_task_done(self, record: Record, done: TaskDone) -> None:
            seen.append(done)

    HookSet([Watch(CollectorRegistry())], "ns").task_done(
        Record("ns.tasks.q.retry.1", 0, 0, None, b"", None), "dead", None, "undecodable"
    )
    assert seen == [TaskDone("dead", "unknown", "q", None, "undecodable")]


def test_the_endpoint_serves_the_registry_and_a_port_in_use_says_how_to_fix_it() -> None:
    m = WorkerMetrics(CollectorRegistry())
    m.rebalances.inc()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    stop = serve_metrics(m.registry, port, host="127.0.0.1")
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            assert "streamtasks_rebalances_total 1.0" in resp.read().decode()
        with pytest.raises(ConfigError, match=r"free --metrics-port"):
            serve_metrics(m.registry, port, host="127.0.0.1")
    finally:
        stop()
    with pytest.raises(ConfigError, match="TCP port"):
        serve_metrics(m.registry, 70000)


def test_the_supervisor_keeps_the_metrics_port_for_itself() -> None:
    argv = ["worker", "app:app", "--processes", "2", "--metrics-port", "9100", "-c", "4"]
    assert child_args(argv) == ["worker", "app:app", "-c", "4"]
    assert child_args(["worker", "a:app", "--metrics-port=9100", "--processes=2"]) == [
        "worker",
        "a:app",
    ]


def test_every_metric_the_dashboard_queries_is_one_the_worker_exposes() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    exprs.append(dashboard["templating"]["list"][1]["query"]["query"])
    queried = {name for e in exprs for name in re.findall(r"\bstreamtasks_[a-z_]+", e)}
    assert queried, "the dashboard queries no streamtasks metric"
    assert queried <= exposed_names(), queried - exposed_names()
    # every metric the worker exposes is on the dashboard (histograms via their buckets)
    shown = {n.removesuffix("_bucket") for n in queried}
    assert {n for n in exposed_names() if not n.endswith(("_sum", "_count", "_bucket"))} <= shown


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("", 0))
        s.listen()
        yield int(s.getsockname()[1])


def test_a_worker_whose_metrics_port_is_in_use_fails_before_it_connects(busy_port: int) -> None:
    app = App("m", bootstrap_servers="127.0.0.1:1")  # nothing listens: connecting would hang
    app.task(name="t")(_noop)
    worker = Worker(app, metrics_port=busy_port)
    with pytest.raises(ConfigError, match=rf"port {busy_port}.*free --metrics-port"):
        worker.run(install_signal_handlers=False)


def test_a_supervisor_whose_metrics_port_is_in_use_starts_no_child(
    busy_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(ConfigError, match="free --metrics-port"):
        Supervisor(["worker", "nowhere:app"], 2, metrics_port=busy_port).run()
    assert list(tmp_path.iterdir()) == []  # its metrics directory is removed


def _noop() -> None:
    return None
