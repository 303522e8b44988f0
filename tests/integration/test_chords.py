"""Chords and error callbacks on a real broker: the join survives retries and a kill -9."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from streamtasks import App, ArgumentError, TaskFailedError, TaskStatus, chord, group
from streamtasks.testing import consume_all
from streamtasks.wire.envelope import ResultRecord
from streamtasks.wire.topics import chords_topic, results_topic
from streamtasks.workflows import chord_marker_id, member_id
from tests.integration.conftest import StartWorkers, run_burst_worker

pytestmark = pytest.mark.integration


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_chord_of_200_runs_its_callback_once_with_every_result_in_order(
    app: App, start_workers: StartWorkers, tmp_path: Path
) -> None:
    start_workers(2)
    t, runs = app.tasks, tmp_path / "callback"
    res = chord(group(t["add"].s(i, i) for i in range(200)), t["tally"].s(str(runs))).apply_async()
    assert res.get(timeout=90) == sum(2 * i for i in range(200))
    (line,) = _lines(runs)
    assert line.endswith(" 200")


def test_the_callback_fires_exactly_once_when_members_are_retried_and_a_worker_is_killed(
    app: App, start_workers: StartWorkers, tmp_path: Path, kafka_bootstrap: str, ns: str
) -> None:
    # Given 2 workers and a chord of 300 members of 30 ms, every 10th failing its first attempt
    workers = start_workers(2, "--concurrency", "4")
    t, runs = app.tasks, tmp_path / "callback"
    members = [t["member"].s(i, 30, i % 10 == 0) for i in range(300)]
    res = (group(members) | t["tally"].s(str(runs))).apply_async()
    chord_id = res.id.split(".")[1]
    # When the worker that holds the chord's join state is killed -9 half way through the
    # group (so the other one must rebuild it from the topic), and a new worker joins
    probe = app.AsyncResult(member_id(chord_id, 150))
    deadline = time.monotonic() + 60
    while not probe.ready() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert probe.ready(), "the group did not get half way"
    (first,) = consume_all(kafka_bootstrap, chords_topic(ns), expect=1, timeout=30)[:1]
    joiner_partition = f"{chords_topic(ns)}[{first.partition()}]"
    # (read until one owns it: a rebalance, e.g. on the chords topic's creation, leaves a
    # moment when neither does)
    owners = [w for w in workers if joiner_partition in w.assignment()]
    deadline = time.monotonic() + 60
    while len(owners) != 1 and time.monotonic() < deadline:
        time.sleep(0.05)
        owners = [w for w in workers if joiner_partition in w.assignment()]
    assert len(owners) == 1, f"{joiner_partition} owned by {len(owners)} workers, not 1"
    (victim,) = owners
    victim.kill()
    start_workers(1, wait=False)
    # Then the callback gets all 300 results, in member order, and ran exactly once
    assert res.get(timeout=120) == sum(range(300))
    assert len(_lines(runs)) == 1, _lines(runs)
    marker = app.AsyncResult(chord_marker_id(chord_id))
    assert marker.get(timeout=30) is None and marker.status is TaskStatus.SUCCESS
    # and every member's outcome went to the chord's one partition (a member re-run after
    # the kill may have reported twice: at-least-once; the join counts the first)
    outcomes = consume_all(kafka_bootstrap, chords_topic(ns), expect=300, timeout=30)
    assert {m.key() for m in outcomes} == {chord_id.encode()}
    print(f"\nchord kill -9: members=300 outcomes={len(outcomes)} callback runs=1")


def test_a_failing_member_fails_the_chord_and_sends_its_error_callbacks(
    app: App, start_workers: StartWorkers, tmp_path: Path
) -> None:
    start_workers(1)
    t, runs, errors = app.tasks, tmp_path / "callback", tmp_path / "errors"
    header = group([t["add"].s(1, 1), t["explode"].s(7), t["add"].s(2, 2)])
    res = chord(header, t["tally"].s(str(runs))).on_error(t["note_failure"].s(str(errors)))
    handle = res.apply_async()
    with pytest.raises(TaskFailedError) as info:
        handle.get(timeout=60)
    assert info.value.error_type == "ChordError"
    assert "member 1" in str(info.value) and "ValueError: step got 7" in str(info.value)
    deadline = time.monotonic() + 30
    while not _lines(errors) and time.monotonic() < deadline:
        time.sleep(0.05)
    (line,) = _lines(errors)
    assert line == f"{handle.id} tally FAILURE ChordError 1"
    assert not runs.exists()  # the callback never ran


def test_a_chord_body_can_be_a_chain_and_an_empty_header_calls_back_at_once(
    app: App, start_workers: StartWorkers, tmp_path: Path
) -> None:
    start_workers(1)
    t, runs = app.tasks, tmp_path / "callback"
    res = chord([t["add"].s(i, 0) for i in range(5)], t["tally"].s(str(runs)) | t["add"].s(100))
    assert res.apply_async().get(timeout=60) == 110
    assert chord([], t["tally"].s(str(runs))).apply_async().get(timeout=60) == 0
    assert [line.split()[1] for line in _lines(runs)] == ["5", "0"]


def test_a_chord_callback_must_take_a_list(app: App) -> None:
    t = app.tasks
    with pytest.raises(ArgumentError, match="must be a list"):
        chord(group(t["add"].s(1, 1)), t["add"].s(1))


def test_link_error_is_sent_once_when_a_task_fails_or_is_dead_lettered(
    app: App, tmp_path: Path, kafka_bootstrap: str, ns: str
) -> None:
    t, errors = app.tasks, tmp_path / "errors"
    on_error = t["note_failure"].s(str(errors))
    failed = t["fail"].apply_async(("boom",), link_error=on_error)
    dead = t["doomed"].s("x").on_error(on_error).apply_async()  # 3 attempts, then the DLQ
    fine = t["add"].apply_async((1, 2), link_error=on_error)
    assert app.flush(30) == 0
    # a burst worker returns once all of it ran: the retries, the DLQ and the error callbacks
    run_burst_worker(kafka_bootstrap, ns)
    assert fine.get(timeout=10) == 3
    for r in (failed, dead):
        with pytest.raises(TaskFailedError):
            r.get(timeout=10)
    assert sorted(_lines(errors)) == sorted(
        [f"{failed.id} fail FAILURE ValueError 1", f"{dead.id} doomed DEAD RuntimeError 3"]
    )
    # each errback has its own deterministic id and one final result
    msgs = consume_all(
        kafka_bootstrap,
        results_topic(ns),
        expect=lambda ms: sum(1 for m in ms if (m.key() or b"").startswith(b"err.")) >= 2,
        timeout=30,
    )
    ids = [
        ResultRecord.from_avro(app.codec.decode(m.value(), expect=app.result_schema)[1]).task_id
        for m in msgs
        if (m.key() or b"").startswith(b"err.")
    ]
    assert sorted(ids) == sorted([f"err.{failed.id}.0", f"err.{dead.id}.0"])


def test_a_chain_error_callback_hears_about_the_failing_step(
    app: App, start_workers: StartWorkers, tmp_path: Path
) -> None:
    start_workers(1)
    t, errors = app.tasks, tmp_path / "errors"
    flow = (t["add"].s(1, 2) | t["explode"].s() | t["add"].s(1)).on_error(
        t["note_failure"].s(str(errors))
    )
    res = flow.apply_async()
    with pytest.raises(TaskFailedError):
        res.get(timeout=60)
    deadline = time.monotonic() + 30
    while not _lines(errors) and time.monotonic() < deadline:
        time.sleep(0.05)
    root = res.id.split(".")[1]
    assert _lines(errors) == [f"wf.{root}.1 explode FAILURE ValueError 1"]


def test_an_error_callback_must_take_a_task_failure(app: App) -> None:
    t = app.tasks
    with pytest.raises(ArgumentError, match="TaskFailure"):
        t["add"].apply_async((1, 2), link_error=t["add"].s(1))
