"""Stopping a process on SIGTERM/SIGINT: one handler for both, and the old ones put back.

* :func:`on_stop_signals` installs a handler (on the main thread only: Python delivers
  signals there) and returns what restores the previous handlers (None if it installed none);
* :func:`drain_then_force` is the worker's handler: the first signal asks for a drain, a
  second one for an immediate stop;
* :class:`StopRelay` is a stop target that exists before what it stops: the CLI installs the
  handler first thing, so a signal during start-up (loading the app, building the worker) is
  remembered and ends the process cleanly instead of killing it by the default action.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

import structlog

__all__ = ["Handler", "StopRelay", "drain_then_force", "on_stop_signals"]

log = structlog.get_logger("streamtasks.worker")

#: a signal handler as :func:`signal.signal` takes it
Handler = Callable[[int, FrameType | None], None]


def on_stop_signals(handler: Handler) -> Callable[[], None] | None:
    """Install ``handler`` for SIGTERM and SIGINT; returns a function restoring the previous
    handlers, or None off the main thread (nothing installed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def drain_then_force(stop: Callable[..., None]) -> Handler:
    """The first signal calls ``stop()`` (drain in-flight tasks), any later one
    ``stop(force=True)``."""
    count = 0

    def handler(signum: int, _frame: FrameType | None) -> None:
        nonlocal count
        count += 1
        if count == 1:
            log.info(
                "stopping: draining in-flight tasks (signal again to stop now)",
                signal=signal.Signals(signum).name,
            )
            stop()
        else:
            log.warning("stopping now", signal=signal.Signals(signum).name)
            stop(force=True)

    return handler


class StopRelay:
    """Call it like :meth:`Worker.stop`; until :meth:`connect` gives it the real target it only
    remembers the request (:attr:`pending`: None, or whether a forced stop was asked), and
    :meth:`connect` hands a remembered request over. Called from a signal handler on the main
    thread, so it takes no lock."""

    def __init__(self) -> None:
        self._target: Callable[..., None] | None = None
        self.pending: bool | None = None

    def __call__(self, *, force: bool = False) -> None:
        target = self._target
        if target is None:
            self.pending = force or bool(self.pending)
        else:
            target(force=force)

    def connect(self, target: Callable[..., None]) -> None:
        self._target = target
        if self.pending is not None:
            target(force=self.pending)
