"""Child processes driven from Python: workers, and the process side of the local brokers.

* :class:`WorkerProcess` — a ``streamtasks worker`` subprocess: start, SIGTERM, ``kill -9``,
  and know when ready (used by the demo, the benchmark and tests; re-exported by
  :mod:`streamtasks.testing`). Readiness is read from the workers' own JSON log lines
  ("partitions assigned" / "revoked" / "lost"), not from the broker's group description,
  which not every Kafka-compatible broker fills in; a set of workers is ready when together
  they own every partition exactly once.
* :class:`BrokerProcess` — what both local broker engines (:mod:`.broker`'s Tansu,
  :mod:`.kafka`'s Apache Kafka) share: one child process in its own session, its state
  (``pid``, ``returncode``, ``is_running``), the wait until it answers a metadata request,
  the signal-then-SIGKILL stop, the tail of its log, the context manager; and
  :func:`reap_process`, the last-resort cleanup a ``weakref.finalize`` runs.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import ClassVar, Self

import structlog
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from streamtasks.errors import BrokerError

__all__ = ["AssignmentLog", "BrokerProcess", "WorkerProcess", "reap_process", "wait_for_workers"]

log = structlog.get_logger(__name__)


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


# -- local brokers ------------------------------------------------------------------------


def reap_process(proc: subprocess.Popen[bytes] | None, *paths: str | None) -> None:
    """Last-resort cleanup (garbage collection or interpreter exit): kill and reap ``proc``,
    then delete ``paths`` (files or directories; ``None`` entries are skipped)."""
    if proc is not None and proc.poll() is None:
        with contextlib.suppress(OSError):
            proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    for path in paths:
        if path is None:
            continue
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


class BrokerProcess:
    """The process side of a local broker engine; subclasses say how to launch it.

    A subclass implements ``start``/``stop`` (under ``self._lock``) with :meth:`_spawn`,
    :meth:`_wait_answering` and :meth:`_end`, and names itself in :attr:`_title` (messages)
    and :attr:`_engine` (log fields). One instance owns at most one process at a time.
    """

    _title: ClassVar[str] = "the broker"
    _engine: ClassVar[str] = "broker"
    #: lines of the log that :meth:`log_tail` gives by default
    _tail_lines: ClassVar[int] = 20
    #: seconds between connection attempts while the broker starts
    _connect_pause: ClassVar[float] = 0.1

    def __init__(self, host: str) -> None:
        self._host = host
        self._lock = threading.RLock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._returncode: int | None = None
        self._log_offset = 0  # where the current process's output starts in its log

    # -- state --------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        raise NotImplementedError

    @property
    def port(self) -> int:
        raise NotImplementedError

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs, else ``None``."""
        proc = self._proc
        return proc.pid if proc is not None and proc.poll() is None else None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last broker process once it has exited (negative: killed by that
        signal); ``None`` while it runs or before the first start."""
        proc = self._proc
        return proc.poll() if proc is not None else self._returncode

    def is_running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running() else "stopped"
        return f"{type(self).__name__}({self.bootstrap_servers}, {state})"

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self, timeout: float = 15.0) -> None:
        raise NotImplementedError

    def stop(self, timeout: float = 10.0) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Stop the broker (and drop what only it used)."""
        self.stop()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- the log ------------------------------------------------------------------------------
    def _log_file(self) -> str | os.PathLike[str] | None:
        raise NotImplementedError

    def _log_where(self) -> str:
        """`` (path)`` of the log for messages, or ``""``."""
        path = self._log_file()
        return f" ({path})" if path is not None else ""

    def _log_text(self) -> str:
        """What the current (or last) process wrote (its last 64 KiB at most)."""
        path = self._log_file()
        if path is None:
            return ""
        try:
            with open(path, "rb") as f:
                size = f.seek(0, os.SEEK_END)
                f.seek(max(self._log_offset, size - 64 * 1024))
                data = f.read()
        except OSError:
            return ""
        return data.decode("utf-8", errors="replace")

    def log_tail(self, lines: int | None = None) -> str:
        """The last ``lines`` lines the current (or last) broker process wrote."""
        count = self._tail_lines if lines is None else lines
        return "\n".join(self._log_text().strip().splitlines()[-count:])

    # -- for subclasses -----------------------------------------------------------------------
    def _spawn(
        self, command: list[str], log_fd: int, what: str, env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """Run ``command`` in its own session (a terminal's Ctrl-C reaches only the Python
        process, which decides when to stop it), output to ``log_fd`` (closed here)."""
        try:
            proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise BrokerError(f"could not run {what}: {exc}") from exc
        finally:
            os.close(log_fd)
        self._proc = proc
        self._returncode = None
        return proc

    def _exited_error(self, code: int) -> BrokerError:
        """The error for a process that exited during start-up."""
        return BrokerError(
            f"{self._title} exited with status {code} during start-up; last lines of its "
            f"log{self._log_where()}:\n{self.log_tail()}"
        )

    def _wait_answering(self, timeout: float) -> None:
        """Until the broker answers a metadata request with a broker in it; raises
        :meth:`_exited_error` if it exits, :class:`BrokerError` after ``timeout`` seconds."""
        proc = self._proc
        assert proc is not None
        deadline = time.monotonic() + timeout
        admin: AdminClient | None = None
        while True:
            code = proc.poll()
            if code is not None:
                raise self._exited_error(code)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"{self._title} did not answer on {self.bootstrap_servers} within "
                    f"{timeout:g}s; last lines of its log{self._log_where()}:\n{self.log_tail()}"
                )
            # A plain TCP connect first: it keeps librdkafka from logging refused connections.
            try:
                with socket.create_connection((self._host, self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(min(self._connect_pause, max(remaining, 0.0)))
                continue
            if admin is None:
                admin = AdminClient({"bootstrap.servers": self.bootstrap_servers})
            try:
                metadata = admin.list_topics(timeout=min(2.0, max(remaining, 0.1)))
            except KafkaException:
                continue
            if metadata.brokers:
                return

    def _end(self, sig: signal.Signals, timeout: float) -> subprocess.Popen[bytes] | None:
        """Send ``sig``, wait up to ``timeout`` seconds, then SIGKILL; reap. Returns the
        process that was ended (None if there was none)."""
        proc = self._proc
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(sig)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                log.info(
                    "broker still running after the signal; killing it",
                    engine=self._engine,
                    signal=sig.name,
                    pid=proc.pid,
                    grace_seconds=timeout,
                )
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                proc.wait()
        self._returncode = proc.returncode
        self._proc = None
        return proc
