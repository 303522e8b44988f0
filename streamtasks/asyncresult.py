"""Awaiting results: :class:`AsyncResult` handles, served by the process's
:class:`~streamtasks.listener.ResultListener` (one per process, however many handles wait)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from streamtasks.errors import (
    DeliveryError,
    ResultTimeoutError,
    StreamtasksError,
    TaskFailedError,
)
from streamtasks.kafka.delivery import Delivery
from streamtasks.listener import ResultListener
from streamtasks.wire.envelope import ResultRecord, TaskStatus

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.task import Task

__all__ = ["AsyncResult", "Delivery", "ResultListener"]


class AsyncResult:
    """A handle on a task's outcome: ``.status``, ``.ready()``, ``.get(timeout=...)``."""

    # a process may hold a million of these (send_many): no per-instance dict
    __slots__ = ("_delivery", "_final", "app", "id", "task")

    def __init__(
        self,
        task_id: str,
        *,
        app: App,
        task: Task[Any, Any] | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        self.id = task_id
        self.app = app
        self.task = task
        self._delivery = delivery
        self._final: ResultRecord | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def _listener(self) -> ResultListener:
        return self.app.results_listener(history=self._delivery is None)

    def wait_delivery(self, timeout: float | None = None) -> None:
        """Wait until the broker acknowledged the task event. Raises :class:`DeliveryError`
        if it was NOT enqueued (unreachable broker, refused, timed out — librdkafka's
        ``message.timeout.ms``), :class:`ResultTimeoutError` if not acknowledged yet after
        ``timeout`` seconds (default: until delivered or failed)."""
        d = self._delivery
        if d is None:
            return
        if not self.app.wait_delivered(d, None if timeout is None else max(timeout, 0.1)):
            raise ResultTimeoutError(f"task {self.id} was not acknowledged by the broker yet")
        if d.error is not None:
            self.app.failure_reported(f"task {self.id}")
            raise DeliveryError(
                f"task {self.id} was NOT enqueued: the broker did not acknowledge it "
                f"({d.error}); bootstrap servers {self.app.settings.bootstrap_servers}",
                (self.id,),
            )

    wait_sent = wait_delivery

    def record(self) -> ResultRecord | None:
        """The latest state seen for this task (``None`` if nothing yet)."""
        if self._final is not None:
            return self._final
        rec = self._listener().peek(self.id)
        if rec is not None and rec.status.is_final:
            self._final = rec
        return rec

    @property
    def status(self) -> TaskStatus:
        rec = self.record()
        return TaskStatus.PENDING if rec is None else rec.status

    def revoke(self) -> None:
        """Make sure no worker starts this task (it ends REVOKED); see :meth:`App.revoke`."""
        self.app.revoke(self.id)

    @property
    def info(self) -> Any:
        """The value on SUCCESS, the :class:`ErrorInfo` on failure, else None (Celery's)."""
        rec = self.record()
        if rec is None:
            return None
        if rec.status is TaskStatus.SUCCESS:
            return self._decode_value(rec)
        return rec.error

    def ready(self) -> bool:
        return self.status.is_final

    def get(self, timeout: float | None = None, *, propagate: bool = True) -> Any:
        """Wait for the task to finish and return its value.

        Raises :class:`TaskFailedError` (with the remote error type, message and traceback)
        if it failed and ``propagate`` is true, :class:`ResultTimeoutError` after ``timeout``.
        """
        start = time.monotonic()
        self.wait_sent(timeout)
        rec = self._final
        if rec is None:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
            listener = self._listener()
            rec = listener.wait(self.id, left)
            if rec is None:
                raise ResultTimeoutError(
                    f"task {self.id} did not finish within {timeout}s: {listener.describe(self.id)}"
                )
            self._final = rec
        if rec.status is TaskStatus.SUCCESS:
            return self._decode_value(rec)
        error = rec.error
        if not propagate:
            return error
        if error is None:
            raise TaskFailedError(self.id, rec.status.value, f"task ended {rec.status.value}")
        raise TaskFailedError(self.id, error.type, error.message, error.traceback)

    def _decode_value(self, rec: ResultRecord) -> Any:
        if rec.value is None:
            return None
        task = self.task or self.app.tasks.get(rec.task)
        if task is None:
            raise StreamtasksError(
                f"cannot decode the result of task {rec.task!r}: it is not registered in app "
                f"{self.app.name!r}"
            )
        return task.decode_result(rec.value)
