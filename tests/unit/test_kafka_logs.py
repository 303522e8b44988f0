"""librdkafka's log lines routed through structlog, deduplicated (issue 12, item 2)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time

import structlog
from structlog.testing import capture_logs

from streamtasks.kafka import clients
from streamtasks.logs import _KafkaLogRouter

REFUSED = (
    "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed: "
    "Connection refused (after {ms}ms in state CONNECT)"
)


def _record(text: str, level: int = logging.ERROR) -> logging.LogRecord:
    return logging.LogRecord(
        "x", level, __file__, 1, "%s [%s] %s", ("FAIL", "app-producer#producer-1", text), None
    )


def test_repeated_connection_failures_are_one_warning_then_a_count() -> None:
    # Given the router and 5 refusals of one broker (varying timings in the text)
    router = _KafkaLogRouter(window=3600)
    with capture_logs() as logs:
        for ms in range(5):
            router.handle(_record(REFUSED.format(ms=ms)))
        # When the window has passed and it happens again
        router.window = 0
        router.handle(_record(REFUSED.format(ms=9)))
    # Then one warning said it, and the next one counted the repeats
    events = [e["event"] for e in logs]
    assert events == [
        "broker 127.0.0.1:9 unreachable: Connection refused",
        "broker 127.0.0.1:9 unreachable: Connection refused (repeated 4\u00d7)",
    ]
    assert {e["log_level"] for e in logs} == {"warning"}
    assert logs[0]["source"] == "librdkafka"


def test_a_client_logs_through_structlog() -> None:
    # Given a producer made by streamtasks, pointed at an address nobody listens on (its own,
    # so what other tests of this process logged is not counted as a repeat)
    from streamtasks.dev.broker import free_port

    structlog.reset_defaults()
    dead = f"127.0.0.1:{free_port()}"
    producer = clients.make_producer({"bootstrap.servers": dead, "message.timeout.ms": 1500})
    with capture_logs() as logs:
        producer.produce("t", b"x")
        # When it tries for a while
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            producer.poll(0.1)
        producer.flush(2)
    # Then the failure is one structlog warning, not a line per attempt
    refused = [e for e in logs if "unreachable" in e["event"]]
    assert [e["event"] for e in refused] == [f"broker {dead} unreachable: Connection refused"]


def test_json_log_format_covers_librdkafka_lines() -> None:
    # Given a process with JSON logging and a client that cannot connect
    script = (
        "import time\n"
        "from streamtasks.logs import configure_logging\n"
        "from streamtasks.kafka import clients\n"
        "configure_logging('json')\n"
        "p = clients.make_producer({'bootstrap.servers': '127.0.0.1:9',"
        " 'message.timeout.ms': 1500})\n"
        "p.produce('t', b'x')\n"
        "p.flush(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    # Then every stderr line is JSON (no raw '%3|...' lines) and the refusal is said once
    lines = proc.stderr.splitlines()
    assert lines and all(line.startswith("{") for line in lines), proc.stderr
    assert sum("unreachable: Connection refused" in line for line in lines) == 1
