"""Running a record's task and finishing it: the part of the worker after admission.

:class:`TaskRunning` is a base class of :class:`~streamtasks.worker.worker.Worker` (which sets
the attributes it declares): :meth:`~TaskRunning._submit` hands an admitted record to the
thread pool (or the event loop, for ``async def`` tasks); on a **task thread** the record
runs (:mod:`.executor`) and its outcome, with its task event frames when events are on, goes
to :class:`~streamtasks.worker.outputs.Outputs`; on the **poll thread** the acknowledged job
is completed: its offset finished, the hooks told, the next record of its key submitted. A
``{ns}.chords`` record runs no task: :meth:`~TaskRunning._join` adds it to its chord on the
poll thread and produces the callback once the chord is complete.

Invariants: a task thread touches no shared state but the two hand-back queues
(``_abandoned``, ``_no_output``), which the poll thread drains; every admitted job ends in
exactly one :meth:`~TaskRunning._complete` (finished or abandoned); a record whose partition
was revoked, or that was not started before shutdown began, is abandoned for the next owner.
"""

from __future__ import annotations

import threading
import time
from collections import deque

import structlog

from streamtasks.wire import headers as hdr
from streamtasks.worker.chords import Completion
from streamtasks.worker.events import TaskEvents
from streamtasks.worker.hooks import HookSet
from streamtasks.worker.outcomes import Outcome, Record
from streamtasks.worker.outputs import Job
from streamtasks.worker.partitions import Partitions
from streamtasks.worker.session import Session

__all__ = ["TaskRunning"]

log = structlog.get_logger("streamtasks.worker")


class TaskRunning:
    """Submit, run, emit, complete (a base class of the worker, which sets these)."""

    _s: Session
    _parts: Partitions[Job]
    _hooks: HookSet
    _in_flight: int
    _abandoned: deque[Job]
    _no_output: deque[Job]
    _force: threading.Event
    _draining: threading.Event
    #: False once shutdown began (``_draining``) or a forced stop (``_force``): a plain
    #: attribute for the task threads' per-task check (an Event's is_set is a Python call)
    _starts_open: bool
    _async_tasks: set[bytes]
    _task_events: TaskEvents | None
    _chords_topic: str

    def _join(self, rec: Record) -> None:
        """Poll thread: a chord member's outcome. Not a task: it takes no in-flight slot
        (a chord may have more members than the window) and runs no code of the user."""
        try:
            completion = self._s.joiner.add(rec)
        except Exception:  # the joiner's own invariant broke: finish the record, go on
            log.exception("error joining a chord record; record skipped", **rec.log_fields())
            completion = Completion((rec.topic, rec.partition), (rec.offset,))
        if completion is None:
            return
        tp = completion.tp
        job = Job(rec, self._parts.generation(tp), outcome="joined", joins=completion.offsets)
        if completion.outputs:
            self._hooks.chord_joined(rec)
        if not self._s.outputs.start(job, completion.outputs, completion.then, poll_thread=True):
            self._complete(job, finished=True)

    def _submit(self, job: Job) -> None:
        if self._hooks.any_started:
            self._hooks.started(job.record)
        if (
            self._s.aio is not None
            and hdr.header(job.record.headers, hdr.TASK) in self._async_tasks
        ):
            self._s.aio.submit(lambda: self._execute_async(job))
            return
        self._s.pool.submit(lambda: self._execute(job))

    def _close_starts(self, why: threading.Event) -> None:
        """Set ``why`` (``_draining`` or ``_force``): no admitted job starts from now on."""
        why.set()
        self._starts_open = False

    def _complete(self, job: Job, finished: bool) -> None:
        """Poll thread: ``job`` has an acknowledged outcome (or was abandoned)."""
        tp = job.tp
        if job.joins:  # a chord completion: no task, no in-flight slot
            current = finished and self._parts.current(tp, job.generation)
            if current and self._s.joiner.finished(tp, job.joins):
                self._parts.dirty.add(tp)
            return
        self._in_flight -= 1
        current = self._parts.current(tp, job.generation)
        if finished and current:
            tracker = self._parts.complete(tp, job.record.offset)
            self._s.flow.finished(tp, tracker.unfinished)
        if finished:
            self._hooks.finished(job.record, job.outcome)
            if self._hooks.any_task_done:
                self._hooks.task_done(job.record, job.outcome, job.runtime, job.detail)
        else:
            self._hooks.abandoned(1)
        if current:
            following = self._parts.next_of_key(tp, job.record.key)
            if following is not None:
                self._submit(following)

    # -- task threads ---------------------------------------------------------------------
    def _abandoned_before_start(self, job: Job) -> bool:
        """Task thread: the partition was revoked, or shutdown began, before ``job`` started:
        it is left for the next owner (the poll thread finishes it as abandoned)."""
        if self._starts_open and self._parts.current(job.tp, job.generation):
            return False
        self._abandoned.append(job)
        return True

    def _execute(self, job: Job) -> None:
        if self._abandoned_before_start(job):
            return
        began = time.perf_counter()
        try:
            outcome = job.preset() if job.preset is not None else self._s.executor.run(job.record)
        except Exception as exc:  # every record ends in an outcome, or its offset stalls
            outcome = self._s.executor.outcomes.internal_error(job.record, exc)
        job.runtime = time.perf_counter() - began
        self._emit(job, outcome)

    async def _execute_async(self, job: Job) -> None:
        """Event loop thread: like :meth:`_execute`, for ``async def`` tasks."""
        if self._abandoned_before_start(job):
            return
        began = time.perf_counter()
        try:
            if job.preset is not None:
                outcome = job.preset()
            else:
                outcome = await self._s.executor.run_async(job.record)
        except Exception as exc:
            outcome = self._s.executor.outcomes.internal_error(job.record, exc)
        job.runtime = time.perf_counter() - began
        self._emit(job, outcome)

    def _emit(self, job: Job, outcome: Outcome) -> None:
        job.outcome = outcome.kind
        job.detail = outcome.detail
        events: list[bytes] = []
        if self._task_events is not None:  # acknowledged with the outcome, before the commit
            events = self._task_events.frames(job.record, job.received_ms, outcome)
        if not self._s.outputs.start(job, outcome.outputs, outcome.then, events=events):
            self._no_output.append(job)  # nothing to acknowledge (a duplicate fire): done now
