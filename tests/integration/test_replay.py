"""`streamtasks replay` against a real broker and real (burst) worker processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING

from streamtasks import App, chain
from streamtasks.kafka import reader
from streamtasks.ops.replay import Replay
from streamtasks.ops.replayspec import Progress, fold_progress
from streamtasks.ops.store import ResultStore
from streamtasks.wire.envelope import Envelope, TaskStatus, now_ms
from streamtasks.wire.topics import REPLAY_HEADER, REPLAY_ORIGIN_HEADER, replays_topic, task_topic
from tests.integration.conftest import APP_SPEC, ROOT, run_burst_worker

N = 1000


def _env(ns: str) -> dict[str, str]:
    return {**os.environ, "STREAMTASKS_NAMESPACE": ns, "COLUMNS": "200"}


def _cli(bootstrap: str, ns: str, *args: str, timeout: float = 120) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-m", "streamtasks", "-b", bootstrap, *args],
        cwd=ROOT,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        text=True,
        timeout=timeout,
        env=_env(ns),
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out: dict[str, object] = json.loads(proc.stdout)
    return out


def burst(bootstrap: str, ns: str) -> None:
    run_burst_worker(bootstrap, ns, "--concurrency", "8")


def statuses(app: App) -> dict[str, TaskStatus]:
    with ResultStore(app, ":memory:") as store:
        store.sync()
        return {r.task_id: r.status for r in store.query(limit=None)}


def replayed(app: App, replay_id: str) -> list[tuple[str, str]]:
    """(task id, origin) of every record of the default queue carrying ``replay_id``."""
    topic = task_topic(app.settings.namespace, "default")
    out = []
    consumer = reader.open_reader(app)
    try:
        parts = reader.partitions_of(consumer, topic)
        for msg in reader.read_range(consumer, {(topic, p): OFFSET_BEGINNING for p in parts}):
            hdrs = dict(msg.headers() or [])
            if hdrs.get(REPLAY_HEADER) == replay_id.encode():
                out.append((hdrs["st-id"].decode(), hdrs[REPLAY_ORIGIN_HEADER].decode()))
    finally:
        consumer.close()
    return out


def recorded(app: App, replay_id: str) -> Progress:
    """What ``{ns}.replays`` holds for ``replay_id``."""
    topic = replays_topic(app.settings.namespace)
    consumer = reader.open_reader(app)
    try:
        parts = reader.partitions_of(consumer, topic)
        starts = {(topic, p): reader.BEGINNING for p in parts}
        records = [(m.key(), m.value()) for m in reader.read_range(consumer, starts)]
    finally:
        consumer.close()
    return fold_progress(replay_id, records)


def runs(flag: Path) -> Counter[int]:
    path = Path(str(flag) + ".runs")
    return Counter(int(line) for line in path.read_text().split()) if path.exists() else Counter()


@pytest.mark.timeout(420)
def test_replay_failures_after_a_fix_resumes_after_kill_9_and_never_enqueues_twice(
    kafka_bootstrap: str, ns: str, app: App, tmp_path: Path
) -> None:
    # Given 1,000 tasks sent while a flag makes the odd ones fail, run by a burst worker
    flag = tmp_path / "flag"
    flag.write_text("")
    start = now_ms()
    handles = [app.tasks["broken_while"].send(str(flag), i) for i in range(N)]
    assert app.flush(30) == 0
    end = now_ms() + 1
    burst(kafka_bootstrap, ns)
    first = statuses(app)
    failed = {h.id for i, h in enumerate(handles) if i % 2}
    assert {tid for tid, s in first.items() if s is TaskStatus.FAILURE} == failed
    assert sum(runs(flag).values()) == N // 2
    # ... and the bug is fixed
    flag.unlink()

    # When a dry run of the window's FAILUREs is asked
    window = [f"--from={start}", f"--to={end}", "--queue", "default"]
    dry = _cli(kafka_bootstrap, ns, "replay", APP_SPEC, *window, "--status", "FAILURE",
               "--dry-run", "--json")  # fmt: skip
    # Then it counts them per task and status, shows a sample, and enqueues nothing
    assert dry["counts"] == [{"task": "broken_while", "status": "FAILURE", "count": N // 2}]
    assert len(dry["sample"]) == 10  # type: ignore[arg-type]
    assert replayed(app, str(dry["replay_id"])) == []

    # When a replay of the window's FAILUREs is killed -9 part way through ...
    cmd = [sys.executable, "-m", "streamtasks", "-b", kafka_bootstrap, "replay", APP_SPEC]
    proc = subprocess.Popen(
        [*cmd, *window, "--status", "FAILURE", "--rate", "150", "--yes", "--json"],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(ns),
    )
    assert proc.stderr is not None
    said = ""
    while (found := re.search(r"rp-\d{8}T\d{6}-[0-9a-f]{6}", said)) is None:
        line = proc.stderr.readline()
        assert line, f"the replay exited early: {said}"
        said += line
    replay_id = found.group(0)
    # (about half way, once it recorded a position: the resume uses positions and the scan)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
        recorded(app, replay_id).positions and len(replayed(app, replay_id)) >= 200
    ):
        assert proc.poll() is None, "the replay finished before it could be interrupted"
    proc.kill()
    proc.communicate()
    before = len(replayed(app, replay_id))
    assert 0 < before < N // 2

    # ... and resumed
    resumed = _cli(
        kafka_bootstrap, ns, "replay", APP_SPEC, "--resume", replay_id, "--yes", "--json"
    )

    # Then every failed task was enqueued exactly once by this replay id, none twice
    copies = replayed(app, replay_id)
    assert len(copies) == N // 2
    assert {tid for tid, _ in copies} == failed
    assert len({origin for _, origin in copies}) == N // 2
    assert resumed["enqueued"] == N // 2 - before
    # ... the recorded positions spared re-reading some, the topic scan found the rest
    assert int(resumed["skipped"]) < before  # type: ignore[call-overload]
    print(
        f"\nreplay kill -9: {before} enqueued before the kill, {resumed['enqueued']} by --resume "
        f"({resumed['skipped']} found enqueued already), {len(copies)} in all, 0 twice"
    )
    # ... they run again and now succeed, under their own ids
    burst(kafka_bootstrap, ns)
    after = statuses(app)
    assert all(after[tid] is TaskStatus.SUCCESS for tid in failed)
    assert runs(flag) == Counter(range(N))  # each odd i ran once more, no even i again

    # When the same replay id is run again, nothing is enqueued
    again = _cli(kafka_bootstrap, ns, "replay", APP_SPEC, "--resume", replay_id, "--yes", "--json")
    assert again["enqueued"] == 0
    assert len(replayed(app, replay_id)) == N // 2

    # When a new replay of the window (all of it: everything is SUCCESS now) runs
    second = _cli(kafka_bootstrap, ns, "replay", APP_SPEC, *window, "--yes", "--json")
    # Then it enqueues all of them again (its own copies of the first replay are not selected)
    assert second["replay_id"] != replay_id
    assert second["enqueued"] == N
    burst(kafka_bootstrap, ns)
    assert runs(flag) == Counter({i: 2 for i in range(N)})


@pytest.mark.partitions(1)
@pytest.mark.timeout(120)
def test_a_replay_selects_exactly_the_records_in_from_to_by_their_timestamps(
    app: App, ns: str
) -> None:
    # Given records stamped around the range [t, u), 200 of them before it (so the start is
    # found mid-partition, by the broker's time index or by the fallback search)
    task = app.tasks["add"]
    topic = task_topic(ns, "default")
    t = now_ms() - 60_000
    u = t + 10_000
    stamps = [t - 5_000 + i for i in range(200)] + [t - 1, t, t + 1, u - 1, u, u + 1, u + 70_000]
    for i, ts in enumerate(stamps):
        env = Envelope(
            id=f"b-{i}-{ts - t}", task="add", queue="default", args=task.encode_args((i, 0), {})
        )
        value = app.codec.encode(app.envelope_schema, env.to_avro())
        app.producer.produce(
            topic, value=value, key=env.id.encode(), headers=[("st-task", b"add")], timestamp=ts
        )
    assert app.flush(30) == 0

    # When a replay of [t, u) is planned
    plan = Replay.create(app, "default", str(t), str(u)).plan(sample_size=100)

    # Then it selects t, t+1 and u-1: the start included, the end excluded
    assert plan.selected == 3
    assert sorted(int(s["task_id"].rsplit("-", 1)[1]) for s in plan.sample) == [0, 1, 9_999]


@pytest.mark.timeout(180)
def test_a_replayed_chain_step_runs_on_into_the_next_step_despite_its_final_result(
    kafka_bootstrap: str, ns: str, app: App, tmp_path: Path
) -> None:
    # Given a chain whose first step failed (the flag) so its next step never ran, and whose
    # result (the last step's id) is therefore a final FAILURE
    flag = tmp_path / "flag"
    flag.write_text("")
    t = app.tasks
    start = now_ms()
    res = chain(t["broken_while"].s(str(flag), 1), t["add"].s(100)).apply_async()
    assert app.flush(30) == 0
    end = now_ms() + 1
    burst(kafka_bootstrap, ns)
    assert statuses(app)[res.id] is TaskStatus.FAILURE
    flag.unlink()

    # When the window's failures are replayed and run
    out = _cli(
        kafka_bootstrap, ns, "replay", APP_SPEC, f"--from={start}", f"--to={end}",
        "--status", "FAILURE", "--yes", "--json",
    )  # fmt: skip
    assert out["enqueued"] == 1
    burst(kafka_bootstrap, ns)

    # Then the next step ran too (its id had a final result, the replay marker carried on)
    with ResultStore(app, ":memory:") as store:
        store.sync()
        last = store.get(res.id)
    assert last is not None and last.status is TaskStatus.SUCCESS
    assert t["add"].decode_result(last.value or b"") == 101


@pytest.mark.timeout(180)
def test_new_ids_replay_under_fresh_ids_that_name_the_original(
    kafka_bootstrap: str, ns: str, app: App
) -> None:
    # Given three tasks that ran
    start = now_ms()
    handles = [app.tasks["add"].send(i, 1) for i in range(3)]
    assert app.flush(30) == 0
    end = now_ms() + 1
    burst(kafka_bootstrap, ns)

    # When they are replayed with --new-ids (and without --yes, in no terminal: refused first)
    window = ["replay", APP_SPEC, f"--from={start}", f"--to={end}", "--task", "add"]
    unconfirmed = subprocess.run(
        [sys.executable, "-m", "streamtasks", "-b", kafka_bootstrap, *window, "--new-ids"],
        cwd=ROOT, capture_output=True, stdin=subprocess.DEVNULL, text=True, env=_env(ns),
        timeout=60,
    )  # fmt: skip
    assert unconfirmed.returncode == 2 and "--yes" in unconfirmed.stderr
    out = _cli(kafka_bootstrap, ns, *window, "--new-ids", "--rate", "1", "--yes", "--json")
    assert out["enqueued"] == 3
    assert float(out["elapsed_s"]) >= 2.0  # type: ignore[arg-type]  # 3 at 1/s: throttled
    burst(kafka_bootstrap, ns)

    # Then each ran again under a fresh id whose event names the original; originals untouched
    copies = replayed(app, str(out["replay_id"]))
    originals = {h.id for h in handles}
    assert len(copies) == 3 and not {tid for tid, _ in copies} & originals
    assert {tid.split(".r-")[0] for tid, _ in copies} == originals
    results = statuses(app)
    assert all(results[tid] is TaskStatus.SUCCESS for tid, _ in copies)
