"""Per-task lifecycle events of a worker (``Worker(events=True)``, ``worker --events``).

:meth:`TaskEvents.add` turns a record's :class:`~streamtasks.worker.outcomes.Outcome` into the
same outcome plus its :class:`~streamtasks.wire.events.TaskEvent` records on ``{ns}.events``:
``RECEIVED`` (when the poll thread took the record), ``STARTED`` (when its task began, for a
task that ran) and the final one — ``SUCCEEDED``, ``FAILED``, ``RETRIED``, ``DEAD``,
``EXPIRED`` or ``REVOKED`` — with the attempt, run time, error, partition and offset.

Invariants: the events are **outputs of the outcome**, produced with it and acknowledged before
the record's offset may be committed (at-least-once: after a crash an event may repeat, it is
never missing for a committed record); they go before a staged final result, so a task whose
result is final has its events written. What an event says is read from the outcome's result
record, so it cannot disagree with the result. An outcome without a result record (a
duplicate that was skipped, a record that is not a task envelope) gets no task events: there
is no task id to key them by (such a dead letter is in the DLQ with its reason).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import structlog

from streamtasks.errors import StreamtasksError
from streamtasks.wire.envelope import ErrorInfo, ResultRecord, TaskStatus
from streamtasks.wire.events import TaskEvent, TaskEventType, event_record
from streamtasks.wire.topics import events_topic, results_topic
from streamtasks.worker.outcomes import Outcome, Output, Record, queue_of

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["TaskEvents", "event_output"]

log = structlog.get_logger("streamtasks.worker")

T = TaskEventType
_FINAL = {
    TaskStatus.SUCCESS: T.SUCCEEDED,
    TaskStatus.FAILURE: T.FAILED,
    TaskStatus.RETRY: T.RETRIED,
    TaskStatus.DEAD: T.DEAD,
    TaskStatus.EXPIRED: T.EXPIRED,
    TaskStatus.REVOKED: T.REVOKED,
}
#: outcomes that never ran the task (no STARTED, no run time)
_NOT_RUN = (TaskStatus.EXPIRED, TaskStatus.REVOKED)


def event_output(topic: str, event: TaskEvent) -> Output:
    """The record of ``event`` on the events topic ``topic``."""
    key, value, headers = event_record(event)
    return Output(topic, key, value, headers)


class TaskEvents:
    """Adds the task events of one worker's outcomes (thread-safe: no state of its own)."""

    def __init__(self, app: App, worker_id: str) -> None:
        self._app = app
        self._worker_id = worker_id
        self._ns = app.settings.namespace
        self._topic = events_topic(self._ns)
        self._results = results_topic(self._ns)

    def add(self, rec: Record, received_ms: int, outcome: Outcome) -> Outcome:
        """``outcome`` with its task events first among its outputs (unchanged if it has no
        result record, or if building them fails: the offset must still finish)."""
        try:
            result = self._result_of(outcome)
            if result is None:
                return outcome
            events = self.events(rec, received_ms, result)
        except (StreamtasksError, ValueError, KeyError) as exc:  # never strand the offset
            log.error("could not build task events", error=repr(exc), **rec.log_fields())
            return outcome
        outputs = tuple(event_output(self._topic, e) for e in events)
        if not outcome.outputs:
            return dataclasses.replace(outcome, outputs=outputs)
        return dataclasses.replace(outcome, outputs=(*outputs, *outcome.outputs))

    def events(self, rec: Record, received_ms: int, result: ResultRecord) -> list[TaskEvent]:
        """The events of a record whose outcome wrote ``result`` (pure)."""
        final = _FINAL.get(result.status)
        if final is None:
            return []
        finished = result.finished_at if result.finished_at is not None else received_ms
        queue = queue_of(rec.topic, self._ns)

        def event(
            kind: TaskEventType,
            at: int,
            runtime: float | None = None,
            error: ErrorInfo | None = None,
        ) -> TaskEvent:
            return TaskEvent(
                result.task_id,
                result.task,
                queue,
                kind,
                result.attempts,
                at,
                self._worker_id,
                runtime,
                error,
                rec.partition,
                rec.offset,
            )

        events = [event(T.RECEIVED, received_ms or finished)]
        runtime = None
        if result.started_at is not None and result.status not in _NOT_RUN:
            events.append(event(T.STARTED, result.started_at))
            runtime = float(max(0, finished - result.started_at))
        events.append(event(final, finished, runtime, result.error))
        return events

    def _result_of(self, outcome: Outcome) -> ResultRecord | None:
        app = self._app
        for out in (*outcome.then, *outcome.outputs):
            if out.topic == self._results and out.value is not None:
                _, raw = app.codec.decode(out.value, expect=app.result_schema)
                return ResultRecord.from_avro(raw)
        return None
