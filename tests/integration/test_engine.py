"""The worker engine under stress: key ordering, crashes, churn, long tasks (real processes)."""

from __future__ import annotations

import itertools
import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Message

from streamtasks import App
from streamtasks.testing import BrokerKind, consume_all, skip_if_tansu, wait_for_workers
from streamtasks.wire.topics import results_topic
from tests.integration.apps.basic import Span
from tests.integration.conftest import StartWorkers

pytestmark = [pytest.mark.integration, pytest.mark.slow]

_NO_KIP848 = "KIP-848 (group.protocol=consumer) does not work"
#: measured 2026-12-03 with another broker's test pass beside it: the result reader was handed
#: offset 388 after 384 (513 after 511) of a partition two workers were writing (README).
_FETCH_SKIPS = (
    "a consumer tailing a partition that two producers append to can be handed records past "
    "some it never got (seen 1 run in ~8 under CPU load; a later read finds them)"
)


def _distinct_keys(n: int) -> Callable[[list[Message]], bool]:
    return lambda msgs: len({m.key() for m in msgs}) >= n


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_same_key_runs_in_send_order_and_different_keys_overlap_within_a_partition(
    app: App, start_workers: StartWorkers, broker_kind: BrokerKind
) -> None:
    skip_if_tansu(broker_kind, _FETCH_SKIPS)  # 5,000 results from 2 workers: it meets the gap
    # Given 2 workers and 50 keys x 100 tasks with random short sleeps
    start_workers(2, "--concurrency", "8")
    rng = random.Random(11)
    handles: dict[str, list[object]] = defaultdict(list)
    for seq in range(100):
        for k in range(50):
            key = f"key-{k}"
            handles[key].append(
                app.tasks["span"].apply_async((key, seq, rng.randint(0, 4)), key=key)
            )
    spans: dict[str, list[Span]] = {
        key: [h.get(timeout=120) for h in hs]  # type: ignore[attr-defined]
        for key, hs in handles.items()
    }
    # Then per key, each task started after the previous one (in send order) ended
    for key, ss in spans.items():
        for before, after in itertools.pairwise(ss):
            assert after.start_ns >= before.end_ns, f"{key}: out of order or overlapping"
        assert len({s.partition for s in ss}) == 1
    # And within a partition, tasks of different keys ran at the same time
    by_partition: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for ss in spans.values():
        for s in ss:
            by_partition[s.partition].append((s.start_ns, s.end_ns))
    best = 0
    for intervals in by_partition.values():
        events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals])
        running = 0
        for _, delta in events:
            running += delta
            best = max(best, running)
    print(f"\nmax observed concurrency within one partition: {best}")
    assert best > 1


@pytest.mark.parametrize("group_protocol", ["classic", "consumer"])
def test_kill_9_a_random_worker_5_times_loses_nothing(
    app: App,
    start_workers: StartWorkers,
    kafka_bootstrap: str,
    ns: str,
    group_protocol: str,
    broker_kind: BrokerKind,
) -> None:
    if group_protocol == "consumer":
        skip_if_tansu(broker_kind, _NO_KIP848)
    flags = ("--concurrency", "4", "--group-protocol", group_protocol)
    # Given 3 workers (4 threads each) and 20,000 tasks of ~3 ms
    n, rng = 20_000, random.Random(3)
    workers = start_workers(3, *flags)
    handles = [app.tasks["work"].send(i, sleep_ms=3) for i in range(n)]
    app.flush()
    # When a random worker is killed -9 five times during the run (and restarted): at 1/6,
    # 2/6, ... 5/6 of the tasks done, so every kill lands mid-run however fast the machine is
    kills, done_at_kill = 0, 0
    for k in range(1, 6):
        deadline = time.monotonic() + 120
        while (done_at_kill := sum(h.ready() for h in handles)) < n * k // 6:
            assert time.monotonic() < deadline, f"{done_at_kill} of {n} done: no progress"
            time.sleep(0.05)  # waiting on other processes' work
        victim = rng.choice([w for w in workers if w.is_alive()])
        victim.kill()
        kills += 1
        workers.remove(victim)
        workers.extend(start_workers(1, *flags, wait=False))
    assert done_at_kill < n, "the run ended before the 5th kill: it proves less than it claims"
    # Then every task completes with its own value
    assert [h.get(timeout=240) for h in handles] == list(range(n))
    records = consume_all(kafka_bootstrap, results_topic(ns), expect=_distinct_keys(n), timeout=60)
    per_id = Counter(m.key() for m in records)
    lost = n - len(per_id)
    duplicates = sum(c - 1 for c in per_id.values())
    print(f"\n3 workers, {n} tasks, {kills} kills: lost={lost} duplicates={duplicates}")
    assert lost == 0
    # each kill re-runs at most the victim's in-flight window (max_in_flight = 256 at
    # concurrency 4) plus what it finished since its last commit (1 s at ~1,300 tasks/s)
    assert duplicates <= kills * (256 + 1300)


@pytest.mark.parametrize("protocol", ["eager", "cooperative", "consumer"])
def test_workers_joining_and_leaving_every_few_seconds_lose_nothing(
    app: App,
    start_workers: StartWorkers,
    kafka_bootstrap: str,
    ns: str,
    protocol: str,
    broker_kind: BrokerKind,
) -> None:
    if protocol == "consumer":
        skip_if_tansu(broker_kind, _NO_KIP848)
    n = 8000
    extra = {"cooperative": ("--cooperative",), "consumer": ("--group-protocol", "consumer")}
    flags = ("--concurrency", "4", *extra.get(protocol, ()))
    workers = start_workers(2, *flags)
    handles = [app.tasks["work"].send(i, sleep_ms=3) for i in range(n)]
    app.flush()
    # churn: every ~2 s one worker leaves (graceful SIGTERM or kill -9) and a new one joins.
    # On Kafka the next one may leave in the middle of a join round. Tansu has a gap there
    # (BROKER.md: a member that leaves while its JoinGroup is pending is still elected leader,
    # never syncs, and the group stays wedged for good), so there one leaves only once the
    # group has settled.
    for step in range(6):
        time.sleep(2)
        leaving = workers.pop(0)
        if step % 2:
            leaving.kill()
        else:
            leaving.terminate(timeout=30)
        workers.extend(start_workers(1, *flags, wait=broker_kind == "tansu"))
    assert [h.get(timeout=240) for h in handles] == list(range(n))
    records = consume_all(kafka_bootstrap, results_topic(ns), expect=_distinct_keys(n), timeout=60)
    per_id = Counter(m.key() for m in records)
    dups = sum(per_id.values()) - len(per_id)
    print(f"\nchurn ({protocol}): lost={n - len(per_id)} duplicates={dups}")
    assert len(per_id) == n


def test_a_30s_task_with_a_10s_max_poll_interval_causes_no_rebalance(
    app: App, start_workers: StartWorkers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a worker whose max.poll.interval.ms is 10 s
    monkeypatch.setenv("STREAMTASKS_KAFKA_MAX_POLL_INTERVAL_MS", "10000")
    (worker,) = start_workers(1, "--concurrency", "4")
    # When a 30 s task runs, and other tasks are sent meanwhile
    long = app.tasks["work"].send(-1, sleep_ms=30_000)
    flowing = []
    for i in range(12):
        time.sleep(1)
        flowing.append(app.tasks["add"].send(i, 0))
        if i % 4 == 3:
            assert flowing[-1].get(timeout=10) == i  # completes while the long task runs
    # Then the long task completes, the others finished before it, and no rebalance happened
    assert long.get(timeout=60) == -1
    long_done = long.record().finished_at  # type: ignore[union-attr]
    assert all(f.record().finished_at < long_done for f in flowing)  # type: ignore[union-attr]
    log = worker.log_text()
    # (a group round that moves nothing, e.g. on a metadata change under load, may log a
    # second, empty or additive, assignment: no partition is ever taken away and given back)
    assigned = [
        p
        for line in log.splitlines()
        if line.startswith("{") and '"partitions assigned"' in line
        for p in json.loads(line)["partitions"]
    ]
    assert assigned and sorted(assigned) == sorted(set(assigned)), log[-2000:]
    assert '"partitions revoked"' not in log and '"partitions lost"' not in log
    assert "MAX_POLL" not in log
    assert worker.is_alive()
    wait_for_workers([worker], app.settings.partitions * len(app.worker_topics()), timeout=5)


def test_2000_async_tasks_run_concurrently_on_one_event_loop(
    app: App, start_workers: StartWorkers
) -> None:
    # Given one worker with async concurrency 100 and 4 task threads
    start_workers(1, "--concurrency", "4", "--async-concurrency", "100")
    # When 2,000 async tasks that each await 20 ms are sent
    handles = [app.tasks["async_span"].send(i, 20) for i in range(2000)]
    spans: list[Span] = [h.get(timeout=60) for h in handles]
    # Then they overlapped far beyond the 4 threads (one loop, many awaits in flight)
    events = sorted([(s.start_ns, 1) for s in spans] + [(s.end_ns, -1) for s in spans])
    running = best = 0
    for _, delta in events:
        running += delta
        best = max(best, running)
    elapsed = (max(s.end_ns for s in spans) - min(s.start_ns for s in spans)) / 1e9
    print(f"\n2000 async tasks x 20 ms: max concurrency {best}, run span {elapsed:.2f}s")
    assert 50 <= best <= 100  # bounded by --async-concurrency
    assert len({s.pid for s in spans}) == 1


def test_a_soft_time_limit_raises_inside_an_async_task_which_can_clean_up(
    app: App, start_workers: StartWorkers, tmp_path: object
) -> None:
    from pathlib import Path

    from streamtasks import TaskFailedError

    marker = Path(str(tmp_path)) / "cleanup.txt"
    start_workers(1)
    with pytest.raises(TaskFailedError) as info:
        app.tasks["async_cleanup"].send(str(marker), 30.0).get(timeout=30)
    assert info.value.error_type == "SoftTimeLimitExceeded"
    assert marker.read_text() == "cleaned\n"
    assert app.tasks["async_cleanup"].send(str(marker), 0.01).get(timeout=30) == "finished"


def test_process_pool_tasks_run_in_child_processes(app: App, start_workers: StartWorkers) -> None:
    (worker,) = start_workers(1, "--process-concurrency", "2")
    pids = {app.tasks["cpu_pid"].send(10_000).get(timeout=60) for _ in range(20)}
    assert worker.pid not in pids and 1 <= len(pids) <= 2


def test_a_hard_time_limit_kills_a_stuck_process_task_and_the_retry_policy_applies(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str
) -> None:
    from streamtasks import TaskFailedError, TaskStatus
    from streamtasks.wire.topics import dlq_topic

    (worker,) = start_workers(1, "--process-concurrency", "1")
    res = app.tasks["stuck"].send("forever")
    # Then each attempt is killed after 1 s, retried once, then dead-lettered
    with pytest.raises(TaskFailedError) as info:
        res.get(timeout=60)
    assert info.value.error_type == "TimeLimitExceeded"
    assert res.status is TaskStatus.DEAD and res.record().attempts == 2  # type: ignore[union-attr]
    (dead,) = consume_all(kafka_bootstrap, dlq_topic(ns, "default"), expect=1, timeout=30)
    assert dict(dead.headers())["st-dlq-reason"] == b"max-attempts"  # type: ignore[arg-type]
    # And the pool replaced the killed process: process tasks still run
    assert app.tasks["cpu_pid"].send(10).get(timeout=60) != worker.pid


def test_a_soft_time_limit_raises_inside_a_process_task_which_can_clean_up(
    app: App, start_workers: StartWorkers, tmp_path: object
) -> None:
    from pathlib import Path

    from streamtasks import TaskFailedError

    marker = Path(str(tmp_path)) / "soft.txt"
    start_workers(1, "--process-concurrency", "1")
    with pytest.raises(TaskFailedError) as info:
        app.tasks["soft_stop"].send(str(marker)).get(timeout=30)
    assert info.value.error_type == "SoftTimeLimitExceeded"
    assert marker.read_text() == "cleaned\n"


def test_the_supervisor_restarts_a_crashed_worker_process_and_drains_on_sigterm(
    app: App, kafka_bootstrap: str, ns: str
) -> None:
    import json
    import os
    import signal

    from streamtasks.dev.processes import WorkerProcess
    from tests.integration.conftest import APP_SPEC, ROOT

    sup = WorkerProcess(
        APP_SPEC,
        bootstrap=kafka_bootstrap,
        env={"STREAMTASKS_NAMESPACE": ns},
        args=["--processes", "2", "--concurrency", "4"],
        cwd=str(ROOT),
    ).start()
    try:

        def events(name: str) -> list[dict[str, object]]:
            out = []
            for line in sup.log_text().splitlines():
                if line.startswith("{") and f'"{name}"' in line:
                    out.append(json.loads(line))
            return out

        def children() -> list[int]:
            return [int(e["pid"]) for e in events("worker process started")]  # type: ignore[call-overload]

        _wait_until(lambda: len(children()) == 2, 30, "2 children")
        # Given both children working through tasks
        handles = [app.tasks["work"].send(i, sleep_ms=2) for i in range(2000)]
        app.flush()
        _wait_until(lambda: any(h.ready() for h in handles), 60, "first result")
        # When one child is killed -9
        os.kill(children()[0], signal.SIGKILL)
        # Then the supervisor starts a replacement and every task still completes
        _wait_until(lambda: len(children()) == 3, 30, "a replacement child")
        assert events("worker process exited; restarting")
        assert [h.get(timeout=120) for h in handles] == list(range(2000))
        # And SIGTERM stops the supervisor and its children cleanly
        code = sup.terminate(timeout=60)
        assert code == 0, sup.log_text()[-6000:]
        for pid in children():
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
    finally:
        sup.kill()


@pytest.mark.partitions(2)
def test_a_hot_partition_is_paused_on_its_own_so_other_partitions_keep_flowing(
    app: App, start_workers: StartWorkers
) -> None:
    # Given a worker busy with a long chain of one key (serial: 2,000 x 2 ms); without the
    # per-partition bound the chain fills the whole in-flight window (checked: this fails
    # with --max-in-flight-per-partition 100000)
    start_workers(1, "--concurrency", "8")
    hot = [app.tasks["span"].apply_async(("hot", i, 2), key="hot") for i in range(2000)]
    hot[0].get(timeout=30)
    # When tasks with other keys are sent meanwhile
    quick = [app.tasks["span"].apply_async((f"q{i}", 0, 0), key=f"q{i}") for i in range(200)]
    quick_spans: list[Span] = [q.get(timeout=60) for q in quick]
    hot_spans: list[Span] = [h.get(timeout=60) for h in hot]
    # Then those on the other partition finished long before the chain's last thousand
    hot_partition = hot_spans[0].partition
    other = [s for s in quick_spans if s.partition != hot_partition]
    assert other, "no quick task landed on the other partition"
    assert max(s.end_ns for s in other) < hot_spans[-1000].end_ns


def test_a_second_sigterm_stops_at_once_and_nothing_unfinished_is_committed(
    app: App, start_workers: StartWorkers
) -> None:
    import os
    import signal
    import subprocess

    # Given a worker running 8 tasks of 20 s (a graceful drain would take 20 s), with
    # threads to spare so the quick task below never waits behind them
    (w,) = start_workers(1, "--concurrency", "16")
    slow = [app.tasks["work"].send(i, sleep_ms=20_000) for i in range(8)]
    quick = app.tasks["add"].send(1, 1)
    assert quick.get(timeout=30) == 2
    time.sleep(0.5)  # the slow ones were handed to the pool with the quick one
    # When it gets SIGTERM twice
    os.kill(w.pid, signal.SIGTERM)
    time.sleep(0.2)
    os.kill(w.pid, signal.SIGTERM)
    # Then it stops well before its tasks could have finished
    try:
        w.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pytest.fail("a second SIGTERM did not stop the worker at once")
    assert not any(h.ready() for h in slow)
    # And their offsets were not committed: a new worker runs every one of them
    start_workers(1, "--concurrency", "8")
    assert [h.get(timeout=60) for h in slow] == list(range(8))
