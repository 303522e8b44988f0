"""Run P worker processes and keep them running: ``streamtasks worker APP --processes P``.

Each child is an ordinary ``streamtasks worker`` process (own consumer, own group member).
Invariants: a child that exits while the supervisor is not stopping is restarted (crash-looping
children with growing backoff, up to 30 s); SIGTERM/SIGINT to the supervisor is forwarded once
per signal (the first drains, a second stops at once — the children's own rule); children run
in their own session, so a terminal's Ctrl-C reaches them only through the supervisor; the
supervisor exits when every child has exited after a stop, with 0 when each stopped as asked
(exit 0, or the forwarded SIGTERM ended a child still starting up).

Metrics (``--metrics-port N``): the supervisor serves the port, so it is bound (or refused, with
a :class:`~streamtasks.errors.ConfigError`) before any child starts and stays up while children
restart. It makes a per-run directory, hands it to the children as ``PROMETHEUS_MULTIPROC_DIR``
(each child runs with ``--metrics-record`` instead of the port: it writes its values there) and
serves their sum with prometheus-client's multiprocess collector; a child's live gauges are
dropped when it exits, and the directory is removed when the supervisor stops.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from types import FrameType

import structlog
from prometheus_client import CollectorRegistry, multiprocess

from streamtasks.worker.metrics import serve_metrics

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
        self.signalled = False  # the supervisor forwarded a stop signal to the current process


class Supervisor:
    def __init__(
        self, child_args: Sequence[str], processes: int, *, metrics_port: int | None = None
    ) -> None:
        if processes < 1:
            raise ValueError("processes must be >= 1")
        self._argv = [sys.executable, "-m", "streamtasks", *child_args]
        self._slots = [_Slot(i) for i in range(processes)]
        self._stopping = threading.Event()
        self._signals = 0
        self._metrics_port = metrics_port
        self._metrics_dir: str | None = None
        self._env: dict[str, str] | None = None

    def _serve_metrics(self, port: int | None) -> Callable[[], None]:
        if port is None:
            return lambda: None
        path = tempfile.mkdtemp(prefix="streamtasks-metrics-")
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
        try:
            stop = serve_metrics(registry, port)
        except BaseException:
            shutil.rmtree(path, ignore_errors=True)
            raise
        self._metrics_dir = path
        self._env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": path}
        self._argv.append("--metrics-record")
        log.info("serving metrics of the worker processes", port=port, directory=path)

        def close() -> None:
            stop()
            shutil.rmtree(path, ignore_errors=True)

        return close

    def _start(self, slot: _Slot) -> None:
        slot.signalled = False  # before the process exists: a forward may set it from here
        slot.proc = subprocess.Popen(self._argv, start_new_session=True, env=self._env)
        slot.started = time.monotonic()
        log.info("worker process started", index=slot.index, pid=slot.proc.pid)

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self._forward("forwarding signal to workers", signal=signal.Signals(signum).name)

    def stop(self, *, force: bool = False) -> None:
        """What a stop signal does (the CLI's handler calls it until :meth:`run` has its own):
        children drain; called again (``force``), they stop at once. Called before
        :meth:`run`, no child is started."""
        self._forward("stopping the worker processes", force=force)

    def _forward(self, event: str, **fields: object) -> None:
        self._signals += 1
        log.info(event, count=self._signals, **fields)
        self._stopping.set()
        for slot in self._slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
                slot.signalled = True

    def _exited(self, slot: _Slot, proc: subprocess.Popen[bytes], now: float) -> None:
        if self._metrics_dir is not None:  # its live gauges (in flight, lag) are gone with it
            multiprocess.mark_process_dead(proc.pid, self._metrics_dir)  # type: ignore[no-untyped-call]
        ran = now - slot.started
        slot.backoff = 0.5 if ran > _HEALTHY_AFTER else min(_MAX_BACKOFF, slot.backoff * 2)
        slot.restart_at = now + (0 if ran > _HEALTHY_AFTER else slot.backoff)
        log.warning(
            "worker process exited; restarting",
            index=slot.index,
            pid=proc.pid,
            returncode=proc.returncode,
            restart_in=round(slot.restart_at - now, 1),
        )
        slot.proc = None

    def _tend(self) -> int:
        """One look at the children: restart the ones that exited on their own (unless
        stopping); returns how many are alive."""
        alive = 0
        now = time.monotonic()
        for slot in self._slots:
            proc = slot.proc
            if proc is not None and proc.poll() is None:
                alive += 1
                if self._stopping.is_set() and not slot.signalled:
                    # the stop came while it was being spawned (before slot.proc was set,
                    # so the forward missed it): it drains like the rest
                    proc.send_signal(signal.SIGTERM)
                    slot.signalled = True
                continue
            if self._stopping.is_set():
                continue
            if proc is not None:  # it exited on its own: a crash (or a kill)
                self._exited(slot, proc, now)
            if now >= slot.restart_at:
                self._start(slot)
                alive += 1
        return alive

    def run(self) -> int:
        stop_metrics = self._serve_metrics(self._metrics_port)
        previous = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for slot in self._slots:
                if not self._stopping.is_set():
                    self._start(slot)
            while self._tend() or not self._stopping.is_set():
                time.sleep(0.1)
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            for slot in self._slots:  # never leave children behind
                if slot.proc is not None and slot.proc.poll() is None:
                    slot.proc.kill()
                    slot.proc.wait()
            stop_metrics()
        codes = [slot.proc.returncode for slot in self._slots if slot.proc is not None]
        log.info("supervisor stopped", returncodes=codes)
        return 0 if all(_clean(slot) for slot in self._slots) else 1


def _clean(slot: _Slot) -> bool:
    """The child stopped as asked: exit 0, or ended by the SIGTERM forwarded to it (it was
    still starting, before its own handler was in place: nothing to drain yet)."""
    if slot.proc is None:
        return True
    code = slot.proc.returncode
    return code == 0 or (slot.signalled and code == -signal.SIGTERM)


#: options the supervisor takes for itself (a child gets ``--metrics-record`` instead of a port)
_OWN_OPTIONS = ("--processes", "--metrics-port")


def child_args(argv: Sequence[str]) -> list[str]:
    """``argv`` (after the program name) without ``--processes N`` and ``--metrics-port N``
    (also in their ``--name=N`` form)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in _OWN_OPTIONS:
            skip = True
            continue
        if arg.startswith(tuple(f"{name}=" for name in _OWN_OPTIONS)):
            continue
        out.append(arg)
    return out
