"""The supervisor's verdict on a stop: a child ended by the SIGTERM it forwarded stopped
as asked."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from streamtasks.worker.supervisor import _clean, _Slot


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
