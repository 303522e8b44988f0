"""Per-task lifecycle events of a worker (``Worker(events=True)``, ``worker --events``).

:meth:`TaskEvents.frames` gives a record's :class:`~streamtasks.worker.outcomes.Outcome` its
:class:`~streamtasks.wire.events.TaskEvent` frames: ``RECEIVED`` (when the poll thread took
the record), ``STARTED`` (when its task began, for a task that ran) and the final one —
``SUCCEEDED``, ``FAILED``, ``RETRIED``, ``DEAD``, ``EXPIRED`` or ``REVOKED`` — with the
attempt, run time, error, partition and offset. The worker's
:class:`~streamtasks.worker.outputs.Outputs` writes them in batches (``TaskEventBatch``
records: the events of many tasks in one record, see ``schemas/event_batch.avsc``).

Invariants: the events are **outputs of the outcome**: the batch that carries them is
acknowledged before the record's offset may be committed (at-least-once: after a crash an
event may repeat, it is never missing for a committed record), and before a staged final
result is produced, so a task whose result is final has its events written. What an event
says is read from the outcome's result record, so it cannot disagree with the result. An
outcome without a result record (a duplicate that was skipped, a record that is not a task
envelope) gets no task events: there is no task id to name them by (such a dead letter is in
the DLQ with its reason).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog

from streamtasks.errors import StreamtasksError
from streamtasks.wire.envelope import ErrorInfo, ResultRecord, TaskStatus
from streamtasks.wire.event_frames import AttemptFrames
from streamtasks.wire.events import TaskEvent, TaskEventType
from streamtasks.wire.topics import queue_of, results_topic
from streamtasks.worker.outcomes import Outcome, Record

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["TaskEvents"]

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


#: one lifecycle step of an attempt: its type, time, run time (ms) and error
_Step = tuple[TaskEventType, int, float | None, ErrorInfo | None]


class TaskEvents:
    """Builds the task event frames of one worker's outcomes (thread-safe: no state changes
    after construction)."""

    def __init__(self, app: App, worker_id: str) -> None:
        self._app = app
        self._worker_id = worker_id
        self._ns = app.settings.namespace
        self._results = results_topic(self._ns)

    def frames(self, rec: Record, received_ms: int, outcome: Outcome) -> list[bytes]:
        """The TaskEvent frames of ``outcome``'s attempt, in order ([] if it has no result
        record, or if building them fails: the offset must still finish)."""
        try:
            result = self._result_of(outcome)
            if result is None:
                return []
            steps = _steps(received_ms, result)
            if not steps:
                return []
            frames = self._frames(rec, result)
            return [frames.frame(*step) for step in steps]
        except (StreamtasksError, ValueError, KeyError) as exc:  # never strand the offset
            log.error("could not build task events", error=repr(exc), **rec.log_fields())
            return []

    def events(self, rec: Record, received_ms: int, result: ResultRecord) -> list[TaskEvent]:
        """The events of a record whose outcome wrote ``result`` (pure)."""
        frames = self._frames(rec, result)
        return [frames.event(*step) for step in _steps(received_ms, result)]

    def _frames(self, rec: Record, result: ResultRecord) -> AttemptFrames:
        queue = queue_of(rec.topic, self._ns)
        return AttemptFrames(
            result.task_id,
            result.task,
            queue,
            result.attempts,
            self._worker_id,
            rec.partition,
            rec.offset,
        )

    def _result_of(self, outcome: Outcome) -> ResultRecord | None:
        app = self._app
        for out in (*outcome.then, *outcome.outputs):
            if out.topic == self._results and out.value is not None:
                if out.result is not None:  # written by this worker: no need to decode it
                    return out.result
                _, raw = app.codec.decode(out.value, expect=app.result_schema)
                return ResultRecord.from_avro(raw)
        return None


def _steps(received_ms: int, result: ResultRecord) -> list[_Step]:
    """RECEIVED, STARTED (for a task that ran) and the final event of ``result``'s attempt."""
    final = _FINAL.get(result.status)
    if final is None:
        return []
    finished = result.finished_at if result.finished_at is not None else received_ms
    steps: list[_Step] = [(T.RECEIVED, received_ms or finished, None, None)]
    runtime = None
    if result.started_at is not None and result.status not in _NOT_RUN:
        steps.append((T.STARTED, result.started_at, None, None))
        runtime = float(max(0, finished - result.started_at))
    steps.append((final, finished, runtime, result.error))
    return steps
