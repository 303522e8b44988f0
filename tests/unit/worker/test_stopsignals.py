"""worker/stopsignals.py: the first stop signal drains, the next forces; old handlers come back."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from streamtasks.worker.stopsignals import StopRelay, drain_then_force, on_stop_signals

ROOT = Path(__file__).resolve().parents[3]


def test_the_first_signal_drains_and_the_second_stops_at_once() -> None:
    calls: list[dict[str, Any]] = []
    handler = drain_then_force(lambda **kw: calls.append(kw))
    handler(signal.SIGTERM, None)
    handler(signal.SIGINT, None)
    handler(signal.SIGTERM, None)
    assert calls == [{}, {"force": True}, {"force": True}]


def test_handlers_are_installed_for_term_and_int_and_restored() -> None:
    # Given the handlers in place before
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(_signum: int, _frame: object) -> None:
        return None

    # When installed (this test runs on the main thread)
    restore = on_stop_signals(handler)
    assert restore is not None
    try:
        assert signal.getsignal(signal.SIGTERM) is handler
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        restore()

    # Then restoring puts the old ones back
    assert {s: signal.getsignal(s) for s in before} == before


def test_off_the_main_thread_nothing_is_installed() -> None:
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(on_stop_signals(lambda *_: None)))
    thread.start()
    thread.join()
    assert got == [None]


def test_a_relay_remembers_a_stop_until_connected_then_forwards() -> None:
    calls: list[bool] = []
    relay = StopRelay()
    assert relay.pending is None
    relay()
    assert relay.pending is False  # a drain was asked before anything could drain
    relay(force=True)
    assert relay.pending is True  # a later forced stop wins
    relay.connect(lambda *, force=False: calls.append(force))
    assert calls == [True]  # handed over on connect
    relay()
    assert calls == [True, False]


@pytest.mark.timeout(60)
def test_sigterm_while_the_worker_is_starting_exits_0(tmp_path: Path) -> None:
    # Given a worker process still loading its app (the import sleeps)
    marker = tmp_path / "loading"
    env = {
        **os.environ,
        "SLOW_APP_MARKER": str(marker),
        "SLOW_APP_SECONDS": "2",
        "PYTHONPATH": str(ROOT),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamtasks", "worker", "tests.unit.worker.slow_app:app"],
        env=env,
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
            time.sleep(0.02)
        # When it is told to stop before the worker exists
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        proc.kill()
    # Then it stops cleanly (not killed by the signal's default action) and says why
    assert proc.returncode == 0, out
    assert "stopped before it started" in out
