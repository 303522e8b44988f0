"""Run P worker processes and keep them running: ``streamtasks worker APP --processes P``.

Each child is an ordinary ``streamtasks worker`` process (own consumer, own group member).
Invariants: a child that exits while the supervisor is not stopping is restarted (crash-looping
children with growing backoff, up to 30 s); SIGTERM/SIGINT to the supervisor is forwarded once
per signal (the first drains, a second stops at once — the children's own rule); children run
in their own session, so a terminal's Ctrl-C reaches them only through the supervisor; the
supervisor exits when every child has exited after a stop.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType

import structlog

__all__ = ["Supervisor"]

log = structlog.get_logger("streamtasks.supervisor")

_MAX_BACKOFF = 30.0
_HEALTHY_AFTER = 30.0  # a child that ran this long resets the crash backoff


class _Slot:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.backoff = 0.5
        self.restart_at = 0.0


class Supervisor:
    def __init__(self, child_args: Sequence[str], processes: int) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self._argv = [sys.executable, "-m", "streamtasks", *child_args]
        self._slots = [_Slot(i) for i in range(processes)]
        self._stopping = threading.Event()
        self._signals = 0

    def _start(self, slot: _Slot) -> None:
        slot.proc = subprocess.Popen(self._argv, start_new_session=True)
        slot.started = time.monotonic()
        log.info("worker process started", index=slot.index, pid=slot.proc.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._signals += 1
        self._stopping.set()
        log.info(
            "forwarding signal to workers", signal=signal.Signals(signum).name, count=self._signals
        )
        for slot in self._slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)

    def run(self) -> int:
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                self._start(slot)
            while True:
                alive = 0
                now = time.monotonic()
                for slot in self._slots:
                    proc = slot.proc
                    if proc is not None and proc.poll() is None:
                        alive += 1
                        continue
                    if self._stopping.is_set():
                        continue
                    if proc is not None:  # it exited on its own: a crash (or a kill)
                        ran = now - slot.started
                        slot.backoff = (
                            0.5 if ran > _HEALTHY_AFTER else min(_MAX_BACKOFF, slot.backoff * 2)
                        )
                        slot.restart_at = now + (0 if ran > _HEALTHY_AFTER else slot.backoff)
                        log.warning(
                            "worker process exited; restarting",
                            index=slot.index,
                            pid=proc.pid,
                            returncode=proc.returncode,
                            restart_in=round(slot.restart_at - now, 1),
                        )
                        slot.proc = None
                    if now >= slot.restart_at:
                        self._start(slot)
                        alive += 1
                if self._stopping.is_set() and alive == 0:
                    break
                time.sleep(0.1)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            for slot in self._slots:  # never leave children behind
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()
                    slot.proc.wait()
        codes = [slot.proc.returncode for slot in self._slots if slot.proc is not None]
        log.info("supervisor stopped", returncodes=codes)
        return 0 if all(c == 0 for c in codes) else 1


def child_args(argv: Sequence[str]) -> list[str]:
    """``argv`` (after the program name) without ``--processes N`` / ``--processes=N``."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == "--processes":
            skip = True
            continue
        if arg.startswith("--processes="):
            continue
        out.append(arg)
    return out
