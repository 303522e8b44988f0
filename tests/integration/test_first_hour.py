"""A newcomer's first hour (issue 12): no silent loss on send, clear broker-down errors, one
way to name the app."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from structlog.testing import capture_logs

from streamtasks import App, DeliveryError
from tests.integration.conftest import APP_SPEC, StartWorkers, run_cli

DEAD = "127.0.0.1:9"  # the discard port: nothing listens, connections are refused


# -- item 1: a send that was never delivered does not look like success ----------------------
def test_cli_send_to_a_dead_address_fails_fast_saying_not_enqueued() -> None:
    # Given no broker at the address
    started = time.monotonic()
    # When a task is sent with the CLI
    proc = run_cli("-b", DEAD, "send", APP_SPEC, "add", "--args", "[1, 2]", timeout=30)
    elapsed = time.monotonic() - started
    # Then it exits non-zero within seconds with one line saying the task was NOT enqueued
    assert proc.returncode == 1, proc.stdout
    assert proc.stdout == ""  # no task id printed as if it had been sent
    assert f"the Kafka broker at {DEAD} could not be reached" in proc.stderr
    assert "NOT enqueued" in proc.stderr
    assert "Producer terminating" not in proc.stderr
    assert elapsed < 20


def test_python_send_to_a_dead_broker_reaches_the_caller() -> None:
    # Given an app whose broker does not answer (short delivery timeout to keep the test fast)
    app = App("dead", bootstrap_servers=DEAD, producer_config={"message.timeout.ms": 2000})

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    try:
        # When a task is sent and awaited
        res = add.send(1, 2)
        # Then the caller learns it was never enqueued
        with pytest.raises(DeliveryError, match="NOT enqueued") as err:
            res.get(timeout=30)
        assert err.value.task_ids == (res.id,)
        # And a synchronous enqueue (a web handler) fails the same way
        with pytest.raises(DeliveryError):
            add.apply_async((1, 2), wait_delivery=10)
        # And flush/close report what was not delivered instead of dropping it
        add.send(3, 4)
        with capture_logs() as logs:
            assert app.flush(10) == 1  # the two reported by DeliveryError are not counted again
        assert any("not delivered" in e["event"] for e in logs)
        lost = add.send(5, 6)
        with capture_logs() as logs:
            assert app.close(timeout=0.1) >= 1
        assert any(f"task {lost.id}" in str(e.get("records")) for e in logs)
    finally:
        app.close(timeout=0.1)


def test_undelivered_tasks_are_logged_with_their_ids_at_exit() -> None:
    # Given a process that sends a task to a dead broker and exits without flushing
    script = (
        "from streamtasks import App\n"
        "from streamtasks.logs import configure_logging\n"
        "configure_logging('json')\n"
        f"app = App('dead', bootstrap_servers={DEAD!r})\n"
        "@app.task(name='add')\n"
        "def add(x: int) -> int:\n"
        "    return x\n"
        "print(add.send(1).id, flush=True)\n"
    )
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    proc = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    task_id = proc.stdout.strip()
    # Then exit says, as an error, which task was NOT enqueued
    assert task_id
    lines = [line for line in proc.stderr.splitlines() if "NOT enqueued" in line]
    assert lines and task_id in lines[0] and '"level": "error"' in lines[0], proc.stderr


# -- item 8: broker-down errors are one line, exit 1, within ~15 s ------------------------
@pytest.mark.parametrize(
    "command",
    [
        ("schedules", APP_SPEC),
        ("result", APP_SPEC, "abc"),
        ("revoke", APP_SPEC, "abc"),
        ("dlq", "list", APP_SPEC),
        ("dlq", "redrive", APP_SPEC),
    ],
    ids=lambda c: " ".join(c[:2]),
)
def test_broker_down_is_one_clear_line(command: tuple[str, ...]) -> None:
    # Given no broker at the address, When the command runs
    started = time.monotonic()
    proc = run_cli("-b", DEAD, *command, timeout=60)
    elapsed = time.monotonic() - started
    # Then one line says the broker cannot be reached, exit 1, within ~15 s
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"error: the Kafka broker at {DEAD} could not be reached")
    assert "KafkaError{" not in proc.stderr and "Traceback" not in proc.stderr
    assert elapsed < 16


def test_every_command_takes_the_app_first() -> None:
    # Given the commands that took --app
    with ThreadPoolExecutor(4) as pool:
        helps = list(
            pool.map(
                lambda c: run_cli(*c, "--help"),
                [("result",), ("revoke",), ("results", "expire")],
            )
        )
    # Then their usage shows APP as the first argument
    for proc in helps:
        assert proc.returncode == 0
        usage = " ".join(proc.stdout.split())
        assert re.search(r"\[OPTIONS\] [{\[]?APP\b", usage), proc.stdout


@pytest.mark.integration
def test_result_with_the_app_first_and_the_deprecated_app_option(
    kafka_bootstrap: str, app: App, ns: str, tmp_path: object
) -> None:
    # Given a task with no result yet
    env = {"STREAMTASKS_NAMESPACE": ns}
    db = str(tmp_path) + "/r.db"  # type: ignore[operator]
    # When its result is asked for, the new way and the old way
    new = run_cli("-b", kafka_bootstrap, "result", APP_SPEC, "nope", "--db", db, env=env)
    old = run_cli("-b", kafka_bootstrap, "result", "nope", "--app", APP_SPEC, "--db", db, env=env)
    # Then both find the app; the old way warns that --app is deprecated
    assert new.returncode == 1 and "nope: no result" in new.stdout, new.stderr
    assert old.returncode == 1 and "nope: no result" in old.stdout, old.stderr
    assert "deprecated" in old.stderr and "deprecated" not in new.stderr


# -- item 3: the dev broker says which client settings suit it ----------------------------
def _broker_output(*args: str) -> list[str]:
    import signal
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, "-m", "streamtasks", "broker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:  # the broker keeps running: read up to the last line
                lines.append(line.rstrip("\n"))
                if "FETCH_WAIT_MAX_MS" in line and "--env" in args:
                    break
                if line.startswith("(`streamtasks broker --env`"):
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return lines


@pytest.mark.timeout(60)
def test_broker_env_emits_the_client_settings_for_eval_or_dotenv() -> None:
    # Given the dev broker started with --env
    lines = _broker_output("--env")
    # Then stdout is only 'export NAME=value' lines: the address and the tuned settings
    assert all(line.startswith("export STREAMTASKS_") for line in lines), lines
    env = dict(line.removeprefix("export ").split("=", 1) for line in lines)
    assert env["STREAMTASKS_BOOTSTRAP_SERVERS"].startswith("127.0.0.1:")
    # And an App configured from them gets fast joins and low fetch latency
    from streamtasks.config import Settings

    consumer = Settings.resolve("demo", environ=env).consumer("g")
    assert consumer["session.timeout.ms"] == "6000"
    assert consumer["fetch.wait.max.ms"] == "10"
    assert "session.timeout.ms" not in Settings.resolve("demo", environ=env).producer()


@pytest.mark.timeout(60)
def test_broker_prints_the_client_settings_with_its_address() -> None:
    lines = _broker_output()
    text = "\n".join(lines)
    assert "STREAMTASKS_BOOTSTRAP_SERVERS=127.0.0.1:" in text
    assert "export STREAMTASKS_KAFKA_SESSION_TIMEOUT_MS=6000" in text
    assert "export STREAMTASKS_KAFKA_FETCH_WAIT_MAX_MS=10" in text


# -- item 10: readable at 80 columns and when piped ---------------------------------------
@pytest.mark.integration
def test_dlq_list_keeps_its_key_columns_at_80_columns(
    app: App, kafka_bootstrap: str, ns: str
) -> None:
    from confluent_kafka import Producer

    from streamtasks.wire.topics import dlq_topic
    from tests.integration.test_dlq_cli import _dead_task

    # Given a dead letter with a long error message
    raw = Producer({"bootstrap.servers": kafka_bootstrap})
    env, headers = _dead_task(
        app, "add", (1, 2), ("TimeoutError", "the database timed out " * 5), 0
    )
    value = app.codec.encode(app.envelope_schema, env.to_avro())
    raw.produce(dlq_topic(ns, "default"), value=value, key=env.id.encode(), headers=headers)
    assert raw.flush(10) == 0
    # When it is listed in an 80-column pipe
    proc = run_cli(
        "-b",
        kafka_bootstrap,
        "dlq",
        "list",
        APP_SPEC,
        env={"STREAMTASKS_NAMESPACE": ns, "COLUMNS": "80"},
    )
    # Then every line fits and the ref, the whole task id, the error type and the age are there
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, proc.stdout
    row = next(line for line in lines if env.id in line)
    assert re.search(r"\b\d+:0\b", row) and "1m" in row
    assert "TimeoutError" in proc.stdout


def test_every_command_of_the_design_is_there() -> None:
    # DESIGN.md's commands, the operations ones last built: each answers --help
    for command in ("dashboard", "events", "replay", "status", "worker", "dlq", "schemas"):
        proc = run_cli(command, "--help")
        assert proc.returncode == 0, (command, proc.stderr)
        assert "Usage" in proc.stdout, (command, proc.stdout)


def test_schedules_at_80_columns_show_whole_iso_timestamps_with_age() -> None:
    # Given an app with schedules and no broker configured, When listed in an 80-column pipe
    proc = run_cli("schedules", "tests.integration.apps.periodic:app", env={"COLUMNS": "80"})
    # Then every line fits and the next fire time is a whole ISO-8601 time with its distance
    assert proc.returncode == 0, proc.stderr
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    assert re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", proc.stdout), proc.stdout
    assert "(in " in proc.stdout


# -- item 9: topics with the wrong shape are flagged ---------------------------------------
@pytest.mark.integration
def test_a_task_topic_with_another_partition_count_is_flagged(kafka_bootstrap: str) -> None:
    from streamtasks.testing import create_topics, unique_name

    # Given the task topic exists with 1 partition (e.g. auto-created by an early send)
    ns = unique_name("shape")
    create_topics(kafka_bootstrap, {f"{ns}.tasks.default": 1})
    env = {"STREAMTASKS_NAMESPACE": ns}
    # When the topics are applied
    proc = run_cli("-b", kafka_bootstrap, "topics", "apply", APP_SPEC, env=env)
    # Then it is not silently "exists": it fails naming the counts and the fix
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"mismatch: 1 partitions {ns}.tasks.default" in proc.stdout
    assert f"topic '{ns}.tasks.default' exists with 1 partitions, the app's config says 6" in (
        proc.stderr
    )
    assert "Fix:" in proc.stderr
    # And a worker's start-up (which applies the topics) warns the same way
    app = App("itest", namespace=ns, bootstrap_servers=kafka_bootstrap)
    with capture_logs() as logs:
        app.apply_topics()
    warned = [e for e in logs if e["event"] == "topic has the wrong partition count"]
    assert len(warned) == 1 and "Fix:" in warned[0]["problem"]
    app.close()


@pytest.mark.integration
def test_a_send_before_topics_apply_creates_no_topic(kafka_bootstrap: str) -> None:
    from confluent_kafka.admin import AdminClient

    from streamtasks.testing import unique_name

    # Given an app whose topics were never applied
    ns = unique_name("early")
    app = App(
        "early",
        namespace=ns,
        bootstrap_servers=kafka_bootstrap,
        producer_config={"message.timeout.ms": 3000},
    )

    @app.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    try:
        # When a task is sent, Then it is refused rather than enqueued on a broker-made topic
        with pytest.raises(DeliveryError):
            add.apply_async((1, 2), wait_delivery=True)
    finally:
        app.close(timeout=0.1)
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    assert f"{ns}.tasks.default" not in topics


# -- item 4: a member without partitions says so -----------------------------------------
@pytest.mark.integration
@pytest.mark.partitions(1)
@pytest.mark.timeout(90)
def test_a_worker_without_partitions_warns_naming_the_group_and_members(
    app: App, start_workers: StartWorkers, kafka_bootstrap: str, ns: str, broker_kind: str
) -> None:
    import json
    import os
    import signal
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    # Given a worker that holds every (single) partition of the queue's topics
    start_workers(1)
    # When a second worker joins the group and gets nothing (first warning after 2 s, not 30)
    script = (
        "import sys\n"
        "from streamtasks.worker import groupwatch\n"
        "groupwatch.FIRST_WARNING = 2.0\n"
        "from streamtasks.cli import main\n"
        f"sys.argv = ['streamtasks', '--log-format', 'json', '-b', {kafka_bootstrap!r},"
        f" 'worker', {APP_SPEC!r}, '-c', '1']\n"
        "main()\n"
    )
    event: dict[str, object] = {}
    with subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "STREAMTASKS_NAMESPACE": ns},
    ) as proc:
        try:
            assert proc.stderr is not None
            for line in proc.stderr:  # pytest-timeout bounds this if it never comes
                if "has had no partitions" in line:
                    event = json.loads(line)
                    break
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    # Then it warned, naming the group, its state and both members
    assert event, "no warning"
    assert event["level"] == "warning"
    assert event["group"] == app.settings.worker_group()
    assert event["error"] is None, event
    if broker_kind == "tansu":
        return  # Tansu's DescribeGroups answers without members (and state UNKNOWN at times)
    assert event["group_state"] == "STABLE", event
    members = event["members"]
    assert isinstance(members, list) and len(members) == 2
    assert any("(0 partitions)" in m for m in members), event
    assert any("(0 partitions)" not in m for m in members), event


# -- item 5: `result` after a broker restart ----------------------------------------------
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_result_store_rebuilds_when_the_topic_history_went_backwards(
    tmp_path: object,
) -> None:
    from pathlib import Path

    from streamtasks.dev.broker import EmbeddedBroker
    from streamtasks.ops.store import ResultStore
    from streamtasks.testing import unique_name
    from streamtasks.wire.envelope import ResultRecord, TaskStatus, now_ms
    from streamtasks.wire.topics import results_topic

    def write_results(app: App, ids: list[str]) -> None:
        for task_id in ids:
            rec = ResultRecord(task_id, "add", TaskStatus.SUCCESS, 1, now_ms())
            value = app.codec.encode(app.result_schema, rec.to_avro())
            app.produce(results_topic(app.settings.namespace), value, key=task_id)
        assert app.flush(10) == 0

    db = Path(str(tmp_path)) / "results.sqlite3"
    ns = unique_name("restart")
    with EmbeddedBroker() as broker:
        # Given a local store synced with 30 results
        app = App("restart", namespace=ns, bootstrap_servers=broker.bootstrap_servers)
        app.apply_topics()
        write_results(app, [f"old-{i}" for i in range(30)])
        with ResultStore(app, db) as store:
            store.sync(timeout=20)
            assert store.get("old-1") is not None
        app.close()
        # When the broker restarts empty (in-memory) and gets 1 new result
        broker.stop()
        broker.start()
        app = App("restart", namespace=ns, bootstrap_servers=broker.bootstrap_servers)
        app.apply_topics()
        write_results(app, ["new-0"])
        # Then the store notices the history went backwards and rebuilds its view
        with capture_logs() as logs, ResultStore(app, db) as store:
            store.sync(timeout=20)
            assert store.get("new-0") is not None
            assert store.get("old-1") is None
        app.close()
    rebuilt = [e for e in logs if "rebuilding" in e["event"]]
    assert len(rebuilt) == 1, logs


# -- item 6: shutdown honours its grace and counts what it left --------------------------
@pytest.mark.integration
@pytest.mark.partitions(1)
def test_shutdown_finishes_running_tasks_only_and_counts_the_abandoned(
    app: App, start_workers: StartWorkers, tmp_path: object
) -> None:
    import json
    from pathlib import Path

    # Given a worker with one thread, a 3 s grace, one task running and five received
    (worker,) = start_workers(1, "-c", "1", "--shutdown-grace", "3")
    marker = Path(str(tmp_path)) / "started"
    for _ in range(6):
        app.tasks["marked_sleep"].send(str(marker), 1500)
    assert app.flush(10) == 0
    deadline = time.monotonic() + 30
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # waiting for the first task to start (an event in another process)
    assert marker.exists()
    # When it is told to stop
    stopping = time.monotonic()
    assert worker.terminate(timeout=30) == 0
    elapsed = time.monotonic() - stopping
    # Then it finished the running task only, within the grace (plus the commit)
    assert elapsed < 3 + 3, (
        elapsed,
        [line[-200:] for line in worker.log_text().splitlines()[-12:]],
    )
    assert marker.read_text().count("started") == 1
    stopped = [
        json.loads(line) for line in worker.log_text().splitlines() if "worker stopped" in line
    ]
    assert stopped and stopped[-1]["succeeded"] == 1
    assert stopped[-1]["abandoned"] == 5, stopped[-1]


# -- item 2: a worker whose broker goes away says so once, and when it is back -------------
@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_worker_says_once_that_its_broker_went_away_and_when_it_is_back() -> None:
    import json

    from streamtasks.dev.broker import EmbeddedBroker
    from streamtasks.testing import WorkerProcess, unique_name, wait_for_workers
    from tests.integration.conftest import ROOT

    def lines() -> list[dict[str, object]]:
        out = []
        for line in worker.log_text().splitlines():
            if line.startswith("{"):
                out.append(json.loads(line))
        return out

    def wait_for(event: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e["event"] == event for e in lines()):
            assert time.monotonic() < deadline, f"no {event!r} in {lines()[-5:]}"
            time.sleep(0.1)  # waiting for a line from another process

    with EmbeddedBroker() as broker:
        # Given a worker that joined its group
        worker = WorkerProcess(
            APP_SPEC,
            bootstrap=broker.bootstrap_servers,
            env={"STREAMTASKS_NAMESPACE": unique_name("down"), "ITEST_PARTITIONS": "1"},
            cwd=str(ROOT),
        ).start()
        try:
            wait_for_workers([worker], partitions=5)
            # When the broker goes away for several seconds
            broker.stop()
            wait_for("broker unreachable; waiting for it to come back", 30)
            unreachable_at = len(lines())
            broker.start()
            # Then, once it is back, the worker says so
            wait_for("broker reachable again", 30)
        finally:
            worker.kill()
    events = lines()
    down = [e for e in events if e["event"] == "broker unreachable; waiting for it to come back"]
    assert len(down) == 1 and down[0]["level"] == "warning"
    # And librdkafka's own complaints were a handful of deduplicated lines, not many a second
    raw = [e for e in events[:unreachable_at] if e.get("source") == "librdkafka"]
    assert len(raw) <= 6, raw
    assert not any(line.startswith("%") for line in worker.log_text().splitlines())


# -- a group request that timed out in an outage must not crash the process when it ends ----
_OUTAGE_SCRIPT = """
import sys
from streamtasks.config import Settings
from streamtasks.dev.broker import EmbeddedBroker
from streamtasks.errors import BrokerError
from streamtasks.kafka import clients
from streamtasks.worker import groupwatch

with EmbeddedBroker() as broker:
    boot = broker.bootstrap_servers
    admin = clients.make_admin({"bootstrap.servers": boot})  # long-lived, like the dashboard's
    print("up:", clients.describe_group(admin, "g", timeout=5).state, flush=True)
    broker.stop()
    calls = [
        lambda: clients.describe_group(admin, "g", timeout=2),
        lambda: clients.committed_offsets(admin, "g", "t", [0], timeout=2),
        lambda: clients.alter_offsets(admin, "g", "t", {0: 0}, timeout=2),
    ]
    for call in calls:
        try:
            call()
        except BrokerError as exc:
            print("down:", exc, flush=True)
    print("watch:", groupwatch.describe_group(Settings("x", boot), "g", timeout=2), flush=True)
    broker.start()
    for _ in range(5):  # round trips on the same client once the broker is back
        print("back:", clients.describe_group(admin, "g", timeout=10).state, flush=True)
    print("survived", flush=True)
"""


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_group_requests_that_timed_out_in_an_outage_do_not_crash_the_process_after_it() -> None:
    # Given a process with a long-lived admin client, whose group requests (describe, read and
    # set offsets, the worker's group watch) time out while the broker is down
    import subprocess
    import sys

    from tests.integration.conftest import ROOT

    # When the broker comes back (librdkafka 2.16 aborts the process here if a client whose
    # coordinator request timed out is still alive)
    proc = subprocess.run(
        [sys.executable, "-c", _OUTAGE_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=100,
    )
    # Then each request failed with a clear error, and the process lives on
    out = proc.stdout
    assert proc.returncode == 0, f"exit {proc.returncode}\n{out}\n{proc.stderr[-2000:]}"
    assert out.count("down: ") == 3 and "Timed out" in out, out
    assert "'state': 'unknown'" in out.split("watch:")[1], out
    assert out.count("back: ") == 5 and "survived" in out, out
