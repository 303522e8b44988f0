"""Worker subprocesses driven from Python: start, SIGTERM, ``kill -9``, and know when ready.

Used by the demo, the benchmark and tests (re-exported by :mod:`streamtasks.testing`).
Readiness is read from the workers' own JSON log lines ("partitions assigned" / "revoked" /
"lost"), not from the broker's group description, which not every Kafka-compatible broker
fills in; a set of workers is ready when together they own every partition exactly once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence

__all__ = ["AssignmentLog", "WorkerProcess", "wait_for_workers"]


class AssignmentLog:
    """Follows a worker's JSON log and keeps the partitions it currently owns."""

    def __init__(self, path: str, *, offset: int = 0) -> None:
        self.path = path
        self._offset = offset
        self._assigned: set[str] = set()

    def forget(self) -> None:
        self._assigned = set()

    def assignment(self) -> set[str]:
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        for line in data[:end].splitlines():
            if not line.startswith(b"{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            parts = set(event.get("partitions") or ())
            if event.get("event") == "partitions assigned":
                self._assigned |= parts
            elif event.get("event") in ("partitions revoked", "partitions lost"):
                self._assigned -= parts
        return set(self._assigned)


class WorkerProcess:
    """A ``streamtasks worker`` subprocess.

    ``WorkerProcess("myproj.tasks:app", bootstrap=..., env={"STREAMTASKS_NAMESPACE": ns})``;
    :meth:`kill` is a real ``kill -9``; :meth:`terminate` sends SIGTERM and waits (drain).
    """

    def __init__(
        self,
        app_spec: str,
        *,
        bootstrap: str,
        env: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
        cwd: str | None = None,
        log_path: str | None = None,
        log_level: str = "info",
        command: str = "worker",
    ) -> None:
        self.app_spec = app_spec
        self._env = {**os.environ, "STREAMTASKS_BOOTSTRAP_SERVERS": bootstrap, **(env or {})}
        self._args = list(args)
        self._cwd = cwd
        self._log_level = log_level
        self._command = command
        if log_path is None:
            fd, log_path = tempfile.mkstemp(prefix="streamtasks-worker-", suffix=".log")
            os.close(fd)
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None
        self._log = AssignmentLog(log_path)

    def start(self) -> WorkerProcess:
        with open(self.log_path, "ab") as log:
            self._log = AssignmentLog(self.log_path, offset=log.tell())
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "streamtasks",
                    "--log-format",
                    "json",
                    "--log-level",
                    self._log_level,
                    self._command,
                    self.app_spec,
                    *self._args,
                ],
                env=self._env,
                cwd=self._cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return self

    @property
    def pid(self) -> int:
        assert self._proc is not None, "not started"
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def kill(self) -> None:
        """``kill -9``: no drain, no commit, no leaving the group."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()
        self._log.forget()

    def terminate(self, timeout: float = 45.0) -> int:
        """SIGTERM (graceful drain), wait; SIGKILL if it does not exit in time."""
        if self._proc is None:
            return 0
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.forget()
        return self._proc.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; raises ``subprocess.TimeoutExpired`` after timeout."""
        assert self._proc is not None, "not started"
        return self._proc.wait(timeout)

    def log_text(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()

    def assignment(self) -> set[str]:
        """The partitions (``topic[p]``) this worker owns, according to its log so far."""
        if not self.is_alive():
            return set()
        return self._log.assignment()

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.terminate(timeout=15.0)


def wait_for_workers(
    workers: Sequence[WorkerProcess], partitions: int, *, timeout: float = 60.0
) -> None:
    """Block until ``workers`` together own all ``partitions`` exactly once, each owning some
    (when there are no more workers than partitions). Raises ``RuntimeError`` with the log of
    a worker that exited, or on timeout."""
    deadline = time.monotonic() + timeout
    owned: list[set[str]] = []
    while time.monotonic() < deadline:
        for w in workers:
            if w.returncode is not None:
                raise RuntimeError(
                    f"worker exited with {w.returncode} before it was ready:\n"
                    + w.log_text()[-3000:]
                )
        owned = [w.assignment() for w in workers]
        total = sum(len(o) for o in owned)
        union = set().union(*owned) if owned else set()
        everyone = all(owned) or len(workers) > partitions
        if total == partitions and len(union) == partitions and everyone:
            return
        time.sleep(0.05)
    raise RuntimeError(
        f"workers not ready after {timeout:.0f}s: they own {[sorted(o) for o in owned]}, "
        f"wanted {partitions} partitions in all"
    )
