"""Child processes for CPU-bound tasks (``@app.task(pool="process")``), with hard time limits.

A child imports the app itself (from its ``module:attribute`` spec) and exchanges only bytes
and strings with the worker: the Avro-encoded argument record in, the Avro-encoded result
(or the error's type, message and traceback) out — no pickled task objects.

Invariants: a child runs one task at a time; a child that outlives its task's hard
``time_limit`` is killed (SIGKILL) and replaced, and the task fails with
:class:`TimeLimitExceeded`; a ``soft_time_limit`` raises :class:`SoftTimeLimitExceeded` inside
the task first (SIGALRM in the child), so it can clean up.
"""

from __future__ import annotations

import multiprocessing
import queue
import signal
import threading
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection

import structlog

from streamtasks._loading import load_app
from streamtasks.errors import StreamtasksError
from streamtasks.signals import SoftTimeLimitExceeded

__all__ = ["ChildError", "ProcessPool", "TimeLimitExceeded"]

log = structlog.get_logger("streamtasks.procpool")

_CTX = multiprocessing.get_context("spawn")  # no fork of a process running librdkafka threads


class TimeLimitExceeded(Exception):
    """The task ran past its hard ``time_limit``; its process was killed."""


@dataclass(frozen=True)
class ChildError(Exception):
    """A task raised in a child process (type name, message and traceback as text)."""

    type_name: str
    message: str
    remote_traceback: str

    def __str__(self) -> str:
        return self.message


def _child_main(app_spec: str, conn: Connection) -> None:
    """Child process: import the app, then run (task name, args bytes) requests forever."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when children stop

    app = load_app(app_spec)

    def on_alarm(_signum: int, _frame: object) -> None:
        raise SoftTimeLimitExceeded("the task exceeded its soft time limit")

    signal.signal(signal.SIGALRM, on_alarm)
    conn.send(("ready", None))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        name, args_bytes, soft = request
        try:
            task = app.tasks[name]
            args, kwargs = task.decode_args(args_bytes)
            if soft:
                signal.setitimer(signal.ITIMER_REAL, soft)
            try:
                value = task.func(*args, **kwargs)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
            conn.send(("ok", task.encode_result(value)))
        except Exception as exc:
            tb = "".join(traceback.format_exception(exc))
            conn.send(("error", (type(exc).__qualname__, str(exc), tb)))


class _Child:
    def __init__(self, app_spec: str) -> None:
        parent, child = _CTX.Pipe()
        self.conn = parent
        self.process = _CTX.Process(
            target=_child_main, args=(app_spec, child), name="streamtasks-child", daemon=True
        )
        self.process.start()
        child.close()
        if not self.conn.poll(60):
            self.kill()
            raise StreamtasksError(f"a task process for {app_spec!r} did not start within 60 s")
        status, _ = self.conn.recv()
        assert status == "ready"

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()
        self.process.join(5)
        self.conn.close()


class ProcessPool:
    """``size`` child processes; :meth:`run` is called from worker task threads."""

    def __init__(self, app_spec: str, size: int) -> None:
        if size < 1:
            raise ValueError("process pool size must be >= 1")
        self._spec = app_spec
        self._idle: queue.SimpleQueue[_Child] = queue.SimpleQueue()
        self._all: set[_Child] = set()
        self._lock = threading.Lock()
        for _ in range(size):
            self._add()

    def _add(self) -> None:
        child = _Child(self._spec)
        with self._lock:
            self._all.add(child)
        self._idle.put(child)

    def run(
        self,
        task_name: str,
        args: bytes,
        *,
        time_limit: float | None,
        soft_time_limit: float | None,
    ) -> bytes:
        """Run a task in a child; returns the encoded result or raises the task's error
        (:class:`ChildError`), :class:`TimeLimitExceeded`, or :class:`StreamtasksError`."""
        child = self._idle.get()
        try:
            child.conn.send((task_name, args, soft_time_limit))
            if not child.conn.poll(time_limit):
                raise TimeLimitExceeded(
                    f"task {task_name!r} exceeded its time limit of {time_limit}s; its "
                    "process was killed"
                )
            status, payload = child.conn.recv()
        except (TimeLimitExceeded, EOFError, OSError) as exc:
            self._replace(child)
            if isinstance(exc, TimeLimitExceeded):
                raise
            raise StreamtasksError(f"the task process died running {task_name!r}: {exc!r}") from exc
        self._idle.put(child)
        if status == "ok":
            result: bytes = payload
            return result
        type_name, message, tb = payload
        raise ChildError(type_name, message, tb)

    def _replace(self, child: _Child) -> None:
        child.kill()
        with self._lock:
            self._all.discard(child)
        log.warning("replacing a task process", pid=child.process.pid)
        self._add()

    def shutdown(self) -> None:
        with self._lock:
            children = list(self._all)
            self._all.clear()
        for child in children:
            child.kill()


def child_error_type(exc: BaseException) -> tuple[str, str, str | None]:
    """(type, message, traceback) of an error, honouring a child's original type name."""
    if isinstance(exc, ChildError):
        return exc.type_name, exc.message, exc.remote_traceback
    return type(exc).__qualname__, str(exc), None
