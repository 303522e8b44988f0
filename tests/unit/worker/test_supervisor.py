"""The supervisor's verdict on a stop: a child ended by the SIGTERM it forwarded stopped
as asked."""

from __future__ import annotations

import signal
import subprocess
import sys
from typing import Any

import pytest

from streamtasks.worker.supervisor import Supervisor, _clean, _Slot


def _ended(code: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({code})"])
    proc.wait(30)
    return proc


def _terminated() -> subprocess.Popen[bytes]:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.send_signal(signal.SIGTERM)
    proc.wait(30)
    return proc


@pytest.mark.timeout(60)
def test_a_child_stopped_as_asked_is_clean_and_anything_else_is_not() -> None:
    slot = _Slot(0)
    assert _clean(slot)  # never started
    slot.proc = _ended(0)
    assert _clean(slot)
    slot.proc = _ended(3)
    assert not _clean(slot)
    # killed by a SIGTERM nobody forwarded: not a clean stop
    slot.proc = _terminated()
    assert slot.proc.returncode == -signal.SIGTERM
    assert not _clean(slot)
    # the forwarded SIGTERM ended it before its own handler was in place: stopped as asked
    slot.signalled = True
    assert _clean(slot)


_CHILD = [sys.executable, "-c", "import time; time.sleep(60)"]


@pytest.mark.timeout(60)
def test_a_stop_before_run_starts_no_child_and_exits_0() -> None:
    # Given a supervisor told to stop before it ran (a SIGTERM while the CLI set it up)
    sup = Supervisor(["worker", "app:app"], 2)
    sup._argv = list(_CHILD)
    sup.stop()
    # Then run starts nothing and exits 0 at once
    assert sup.run() == 0
    assert all(slot.proc is None for slot in sup._slots)


@pytest.mark.timeout(60)
def test_a_stop_while_a_child_is_being_spawned_still_reaches_that_child(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a supervisor of 2 children, and a stop that comes while the second is being
    # spawned (its process exists, the supervisor does not know it yet: the forward misses it)
    sup = Supervisor(["worker", "app:app"], 2)
    sup._argv = list(_CHILD)
    real_popen = subprocess.Popen
    spawned: list[subprocess.Popen[bytes]] = []

    def popen(*args: Any, **kwargs: Any) -> subprocess.Popen[bytes]:
        proc = real_popen(*args, **kwargs)
        spawned.append(proc)
        if len(spawned) == 2:
            sup.stop()
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen)
    # Then both children get the stop, run returns 0 (each ended by the forwarded SIGTERM),
    # instead of waiting forever for the child that never heard of it
    assert sup.run() == 0
    assert [p.returncode for p in spawned] == [-signal.SIGTERM, -signal.SIGTERM]
