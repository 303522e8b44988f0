"""Retry tiers and the chords topic with fewer partitions than the task topic (real broker)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamtasks import App, TaskStatus, chord, group
from streamtasks.testing import WorkerProcess, wait_for_workers
from tests.integration.apps.basic import build
from tests.integration.conftest import APP_SPEC, ROOT

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_retries_and_a_chord_run_through_one_partition_side_topics(
    kafka_bootstrap: str, ns: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given an app whose retry tiers and chords topic have 1 partition (task topic: 6),
    # the same settings in its worker (from the environment)
    env = {"STREAMTASKS_RETRY_PARTITIONS": "1", "STREAMTASKS_CHORD_PARTITIONS": "1"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    app: App = build(namespace=ns, bootstrap_servers=kafka_bootstrap)
    app.apply_topics()
    specs = {s.name: s.partitions for s in app.topic_specs()}
    assert specs[f"{ns}.tasks.default.retry.1"] == 1 and specs[f"{ns}.chords"] == 1
    worker = WorkerProcess(
        APP_SPEC,
        bootstrap=kafka_bootstrap,
        env={"STREAMTASKS_NAMESPACE": ns, **env},
        cwd=str(ROOT),
    ).start()
    try:
        # (its group owns 6 task partitions + 3 retry tiers x 1 + 1 chords partition)
        wait_for_workers([worker], app.worker_partitions())
        # When a task fails twice before succeeding, one is doomed, and a chord runs
        t = app.tasks
        flaky = t["flaky"].send(2)
        doomed = t["doomed"].send("x")
        runs = tmp_path / "callback"
        res = chord(
            group(t["add"].s(i, i) for i in range(20)), t["tally"].s(str(runs))
        ).apply_async()
        # Then each ends as it would with full-size side topics
        assert flaky.get(timeout=60) == 3
        assert doomed.get(timeout=60, propagate=False) is not None
        assert doomed.status is TaskStatus.DEAD
        assert res.get(timeout=60) == sum(2 * i for i in range(20))
    finally:
        worker.kill()
        app.close()
