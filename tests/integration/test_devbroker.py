"""The embedded development broker and the test helpers, against real broker processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Producer

from streamtasks.dev.broker import (
    ENV_BROKER_BIN,
    EmbeddedBroker,
    find_broker_binary,
    free_port,
)
from streamtasks.errors import BrokerError, BrokerNotFoundError
from streamtasks.testing import (
    TEST_PRODUCER_CONFIG,
    consume_all,
    create_topics,
    unique_name,
)

pytestmark = pytest.mark.integration


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _can_listen(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen()
        except OSError:
            return False
    return True


def _produce(bootstrap: str, topic: str, values: list[bytes], *, partitions: int = 1) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, **TEST_PRODUCER_CONFIG})
    errors: list[str] = []

    def on_delivery(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for i, value in enumerate(values):
        producer.produce(
            topic, value, key=str(i).encode(), partition=i % partitions, on_delivery=on_delivery
        )
    assert producer.flush(15) == 0, "messages still queued after 15 s"
    assert errors == []


def test_find_broker_binary_returns_an_executable() -> None:
    path = find_broker_binary()
    assert os.path.isfile(path)
    assert os.access(path, os.X_OK)


def test_binary_env_var_pointing_nowhere_is_reported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    missing = tmp_path / "no-such-tansu"
    monkeypatch.setenv(ENV_BROKER_BIN, str(missing))
    with pytest.raises(BrokerNotFoundError, match=ENV_BROKER_BIN) as info:
        find_broker_binary()
    assert str(missing) in str(info.value)
    with pytest.raises(BrokerNotFoundError, match=ENV_BROKER_BIN):
        EmbeddedBroker().start()


def test_binary_env_var_is_used_when_executable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = find_broker_binary()
    monkeypatch.setenv(ENV_BROKER_BIN, real)
    assert find_broker_binary() == real


def test_broker_starts_serves_and_stops() -> None:
    broker = EmbeddedBroker()
    host, port = broker.host, broker.port
    assert broker.bootstrap_servers == f"{host}:{port}"
    assert not broker.is_running()
    assert broker.pid is None

    broker.start()
    try:
        pid = broker.pid
        assert pid is not None
        assert broker.is_running()
        assert _pid_alive(pid)

        topic = unique_name("devbroker-roundtrip")
        create_topics(broker.bootstrap_servers, [topic])
        _produce(broker.bootstrap_servers, topic, [b"hello"])
        records = consume_all(broker.bootstrap_servers, topic, expect=1, timeout=15)
        assert [(r.key(), r.value()) for r in records] == [(b"0", b"hello")]
    finally:
        broker.stop()

    assert not broker.is_running()
    assert broker.pid is None
    assert not _pid_alive(pid)
    assert _can_listen(host, port)
    broker.stop()  # idempotent


def test_context_manager_and_restart_keep_the_port() -> None:
    with EmbeddedBroker() as broker:
        bootstrap = broker.bootstrap_servers
        first_pid = broker.pid
        assert broker.is_running()
    assert not broker.is_running()
    assert first_pid is not None and not _pid_alive(first_pid)

    with broker:
        assert broker.bootstrap_servers == bootstrap
        assert broker.pid not in (None, first_pid)


def test_given_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        broker = EmbeddedBroker(port=port)
        with pytest.raises(BrokerError, match=f"port {port} is in use") as info:
            broker.start()
        assert "--port" in str(info.value)
        assert not broker.is_running()


def test_automatic_port_taken_before_start_is_replaced() -> None:
    broker = EmbeddedBroker()
    taken = broker.port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", taken))
        holder.listen()
        with broker:
            assert broker.port != taken
            assert broker.bootstrap_servers == f"127.0.0.1:{broker.port}"


def test_given_free_port_is_used() -> None:
    port = free_port()
    with EmbeddedBroker(port=port) as broker:
        assert broker.bootstrap_servers == f"127.0.0.1:{port}"


def test_early_exit_reports_the_log_tail(tmp_path: Path) -> None:
    # A storage engine this build does not have: the process starts and exits at once.
    log_path = tmp_path / "broker.log"
    broker = EmbeddedBroker(storage_engine="nosuch://x/", log_path=str(log_path))
    with pytest.raises(BrokerError, match="exited with status") as info:
        broker.start(timeout=10)
    assert str(log_path) in str(info.value)
    assert not broker.is_running()
    assert log_path.exists()


_SERVE_SCRIPT = (
    "import sys\n"
    "from streamtasks.dev.broker import EmbeddedBroker, serve_forever\n"
    "broker = EmbeddedBroker()\n"
    "def ready(bootstrap):\n"
    "    print('READY', bootstrap, broker.pid, flush=True)\n"
    "sys.exit(serve_forever(broker, ready))\n"
)


def _serve_in_subprocess() -> tuple[subprocess.Popen[str], str, int, int]:
    """Run serve_forever in a child Python; return it, the broker's host, port and pid."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=Path(__file__).resolve().parents[2],  # the checkout, so `streamtasks` imports
    )
    assert proc.stdout is not None
    output: list[str] = []
    while True:
        line = proc.stdout.readline()
        if not line:
            proc.wait(timeout=10)
            proc.stdout.close()
            pytest.fail("serve_forever exited before it was ready:\n" + "".join(output))
        output.append(line)
        if line.startswith("READY"):
            _, bootstrap, pid = line.split()
            host, port = bootstrap.rsplit(":", 1)
            return proc, host, int(port), int(pid)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_forever_stops_the_broker_on_a_signal(signum: signal.Signals) -> None:
    proc, host, port, broker_pid = _serve_in_subprocess()
    try:
        with socket.create_connection((host, port), timeout=5):
            pass
        proc.send_signal(signum)
        assert proc.wait(timeout=20) == 0
        assert not _pid_alive(broker_pid)
        assert _can_listen(host, port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_serve_forever_returns_nonzero_when_the_broker_dies() -> None:
    proc, _host, _port, broker_pid = _serve_in_subprocess()
    try:
        os.kill(broker_pid, signal.SIGKILL)
        assert proc.wait(timeout=20) == 1
        assert proc.stdout is not None
        assert "exited unexpectedly" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_create_topics_is_idempotent_and_consume_all_reads_every_partition(
    kafka_bootstrap: str,
) -> None:
    topic = unique_name("devbroker-partitions")
    create_topics(kafka_bootstrap, {topic: 3})
    create_topics(kafka_bootstrap, {topic: 3})  # already exists: fine

    values = [f"m{i}".encode() for i in range(30)]
    _produce(kafka_bootstrap, topic, values, partitions=3)

    records = consume_all(kafka_bootstrap, topic, expect=len(values), timeout=20)
    assert sorted(r.value() or b"" for r in records) == sorted(values)
    assert {r.partition() for r in records} == {0, 1, 2}


def test_create_topics_rejects_a_different_partition_count(kafka_bootstrap: str) -> None:
    topic = unique_name("devbroker-mismatch")
    create_topics(kafka_bootstrap, {topic: 2})
    with pytest.raises(BrokerError, match="2 partitions, not 3"):
        create_topics(kafka_bootstrap, {topic: 3}, timeout=5)


def test_consume_all_with_predicate_and_timeout(kafka_bootstrap: str) -> None:
    topic = unique_name("devbroker-predicate")
    create_topics(kafka_bootstrap, [topic])
    _produce(kafka_bootstrap, topic, [b"a", b"b", b"stop"])
    records = consume_all(
        kafka_bootstrap,
        topic,
        expect=lambda got: any(r.value() == b"stop" for r in got),
        timeout=15,
    )
    assert [r.value() for r in records] == [b"a", b"b", b"stop"]

    started = time.monotonic()
    assert len(consume_all(kafka_bootstrap, topic, expect=10, timeout=1.0)) == 3
    assert time.monotonic() - started < 5


def test_kafka_bootstrap_fixture_answers_metadata(kafka_bootstrap: str, broker_kind: str) -> None:
    from confluent_kafka.admin import AdminClient

    assert broker_kind in ("tansu", "kafka", "external")
    metadata = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert metadata.brokers


def test_unique_name_is_kafka_legal_and_unique() -> None:
    names = {unique_name("a b/c:d") for _ in range(100)}
    assert len(names) == 100
    for name in names:
        assert name.startswith("a-b-c-d-")
        assert all(c.isalnum() or c in "._-" for c in name)
    assert len(unique_name("x" * 400)) <= 249
