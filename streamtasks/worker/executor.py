"""Running one consumed record: decode it, run its task, and say what must be produced.

This is the part of the worker that runs on task threads. It touches no Kafka client and no
worker state: :meth:`Executor.run` (or :meth:`~Executor.run_async`, or in a child process)
turns a :class:`Record` into an :class:`Outcome`, a list of :class:`Output` records (result,
retry record, dead letter) that the worker produces; the record's offset may be committed
once every one of them is acknowledged. What those outputs are is built elsewhere: result,
retry and dead-letter records by :mod:`.outcomes`, the next chain step, chord member outcome
and error callbacks by :mod:`.continuation`.

Invariants: every record yields at least one output (so every offset eventually finishes) —
an unexpected exception too (:meth:`Executor.internal_error`: a dead letter with reason
``internal-error`` and the traceback); a task that raises goes down the failure path decided
by the pure :func:`streamtasks.retry.decide` (:meth:`.outcomes.Outcomes.failed`).
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from streamtasks.context import TaskContext, _current, _Pending
from streamtasks.errors import (
    ArgumentError,
    DecodeError,
    ResultTooLargeError,
    StreamtasksError,
    UnknownSchemaError,
)
from streamtasks.signals import SoftTimeLimitExceeded
from streamtasks.tracing import record_outcome, spans_on, task_span
from streamtasks.wire.envelope import Envelope, ErrorInfo, TaskStatus, now_ms
from streamtasks.wire.headers import TASK, TRACEPARENT, header, header_pair
from streamtasks.wire.topics import REPLAY_HEADER, chords_topic, task_topic
from streamtasks.wire.tracecontext import checked_traceparent
from streamtasks.worker.continuation import Continuation
from streamtasks.worker.indexes import FiredIndex, RevokedIndex
from streamtasks.worker.outcomes import (
    Outcome,
    Outcomes,
    Output,
    Record,
    Results,
    carry_traceparent,
    error_info,
    staged,
)
from streamtasks.worker.pools.processes import ChildError, ProcessPool

S = TaskStatus

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.task import Task

__all__ = ["Call", "Executor", "Outcome", "Output", "Record", "header"]

log = structlog.get_logger("streamtasks.worker")

#: Produces an output the offset does not wait for (a STARTED state).
EmitEarly = Callable[["Output"], None]


@dataclass(slots=True, eq=False)
class Call:
    """A decoded task call, ready to run (not frozen: made per task, and a frozen
    dataclass's ``__init__`` costs about five times as much; nothing changes it)."""

    record: Record
    env: Envelope
    task: Task[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    started: int


class Executor:
    """Turns consumed records into outcomes for one worker."""

    def __init__(
        self,
        app: App,
        worker_id: str,
        *,
        rng: random.Random | None = None,
        processes: ProcessPool | None = None,
        fired: FiredIndex | None = None,
        revoked: RevokedIndex | None = None,
        emit_early: EmitEarly | None = None,
    ) -> None:
        self.app = app
        self._revoked = revoked
        self._emit_early = emit_early
        self._processes = processes
        self.worker_id = worker_id
        self._ns = app.settings.namespace
        self._chords = chords_topic(self._ns)
        self.results = Results(app, worker_id, fired)
        self.continuation = Continuation(app, self.results)
        self.outcomes = Outcomes(app, worker_id, self.results, self.continuation, rng)

    def run(self, rec: Record) -> Outcome:
        """Decode and run a synchronous task (on the calling thread), inside its span."""
        if not spans_on():  # no span to open: the record's traceparent goes on as it came
            trace, replay = _incoming(rec)
            return self._follow_on(rec, self._run(rec, trace), trace, replay)
        with self._span(rec) as trace:
            outcome = self._run(rec, trace)
            record_outcome(outcome.kind)
        return self._follow_on(rec, outcome, trace, header(rec.headers, REPLAY_HEADER))

    def _span(self, rec: Record) -> AbstractContextManager[str | None]:
        return task_span(
            header(rec.headers, TASK),
            header(rec.headers, TRACEPARENT),
            rec.topic,
            rec.partition,
            rec.offset,
        )

    def _run(self, rec: Record, trace: str | None) -> Outcome:
        call = self.prepare(rec)
        if isinstance(call, Outcome):
            return call
        if call.task.pool == "process" and self._processes is not None:
            return self._run_in_process(call)
        build = functools.partial(self._context, rec, call.env, trace)
        token = _current.set(_Pending(build, trace))
        try:
            value = call.task.func(*call.args, **call.kwargs)
        except Exception as exc:
            return self.outcomes.failed(rec, call.env, call.task, call.started, exc)
        finally:
            _current.reset(token)
        return self.finish(call, value)

    async def run_async(self, rec: Record) -> Outcome:
        """Decode and await an ``async def`` task (on the worker's event loop).

        A ``soft_time_limit`` raises :class:`SoftTimeLimitExceeded` inside the coroutine at
        its next ``await`` (so ``finally`` blocks run), and counts as a failure.
        """
        if not spans_on():
            trace, replay = _incoming(rec)
            return self._follow_on(rec, await self._run_async(rec, trace), trace, replay)
        with self._span(rec) as trace:
            outcome = await self._run_async(rec, trace)
            record_outcome(outcome.kind)
        return self._follow_on(rec, outcome, trace, header(rec.headers, REPLAY_HEADER))

    async def _run_async(self, rec: Record, trace: str | None) -> Outcome:
        call = self.prepare(rec)
        if isinstance(call, Outcome):
            return call
        # this asyncio task's own context
        _current.set(_Pending(functools.partial(self._context, rec, call.env, trace), trace))
        limit = call.task.soft_time_limit
        try:
            coro = call.task.func(*call.args, **call.kwargs)
            if limit is None:
                value = await coro
            else:
                try:
                    async with asyncio.timeout(limit):
                        value = await coro
                except TimeoutError:
                    raise SoftTimeLimitExceeded(
                        f"task {call.task.name!r} exceeded its soft time limit of {limit}s"
                    ) from None
        except Exception as exc:
            return self.outcomes.failed(rec, call.env, call.task, call.started, exc)
        return self.finish(call, value)

    def _run_in_process(self, call: Call) -> Outcome:
        assert self._processes is not None
        task = call.task
        try:
            payload = self._processes.run(
                task.name,
                call.env.args,
                time_limit=task.time_limit,
                soft_time_limit=task.soft_time_limit,
            )
        except Exception as exc:
            return self.outcomes.failed(call.record, call.env, task, call.started, _as_local(exc))
        value = task.decode_result(payload) if call.env.continuation else None
        return self._succeeded(call, payload, value)

    def finish(self, call: Call, value: object) -> Outcome:
        try:
            payload = call.task.encode_result(value)
        except ArgumentError as exc:  # the return value does not fit the declared type
            return self.outcomes.failed(call.record, call.env, call.task, call.started, exc)
        return self._succeeded(call, payload, value)

    def _succeeded(self, call: Call, payload: bytes, value: object) -> Outcome:
        env = call.env
        result = self.results.result_output(env, TaskStatus.SUCCESS, call.started, payload, None)
        limit = self.app.settings.max_payload_bytes
        size = len(result.value or b"")
        if size > limit:  # the result topic would refuse it: the task fails, get() says why
            too_large = ResultTooLargeError(
                f"the result of task {env.task!r} is {size} bytes, over "
                f"max_payload_bytes={limit}; return large data by reference (e.g. a URL or "
                "object key) or raise max_payload_bytes"
            )
            return self.outcomes.failed(
                call.record, env, call.task, call.started, too_large, retry=False
            )
        if not env.continuation:
            return Outcome("success", (result,))
        if self.continuation.is_join(env.continuation[0]):
            member = self.continuation.member_outcome(env, TaskStatus.SUCCESS, payload, None)
            return Outcome("success", (member,), (result,))
        try:
            step = self.continuation.next_step(env, value)
        except (StreamtasksError, ValueError, TypeError, KeyError) as exc:
            # the chain cannot go on (e.g. the result does not fit the next step's first
            # parameter): this step succeeded, the chain failed
            error = error_info(exc)
            final = self.continuation.chain_end(env, TaskStatus.FAILURE, call.started, error)
            errbacks = self.continuation.errbacks(env, TaskStatus.FAILURE, error)
            return Outcome("success", (*final, *errbacks), (result,))
        return Outcome("success", (step,), (result,))

    def prepare(self, rec: Record) -> Call | Outcome:
        """Decode ``rec`` into a call, or the outcome that replaces running it (DLQ, EXPIRED)."""
        app = self.app
        limit = app.settings.max_payload_bytes
        if rec.value is not None and len(rec.value) > limit:
            too_big = ValueError(f"message of {len(rec.value)} bytes exceeds {limit} bytes")
            return self.outcomes.dead_letter_outcome(rec, "oversize", too_big, None)
        try:
            _, raw = app.codec.decode(rec.value, expect=app.envelope_schema)
        except UnknownSchemaError as exc:
            return self.outcomes.dead_letter_outcome(rec, "unknown-schema", exc, None)
        except DecodeError as exc:
            return self.outcomes.dead_letter_outcome(rec, "undecodable", exc, None)
        env = Envelope.from_avro(raw)
        task = app.tasks.get(env.task)
        if task is None:
            unknown = LookupError(f"task {env.task!r} is not registered in app {app.name!r}")
            return self.outcomes.dead_letter_outcome(rec, "unknown-task", unknown, env)
        if (
            FiredIndex.is_fire(env.id)
            and header(rec.headers, REPLAY_HEADER) is None  # a replay runs it again
            and self.results.fired_index().done(env.id)
        ):
            log.info("skipped: this task id already ran", task_id=env.id, **rec.log_fields())
            return Outcome("skipped", ())
        started = now_ms()
        if self._revoked is not None and self._revoked.contains(env.id):
            error = ErrorInfo("TaskRevoked", "revoked before it started")
            log.info("revoked: not run", task_id=env.id, **rec.log_fields())
            revoked = self.results.result_output(env, TaskStatus.REVOKED, started, None, error)
            return staged(
                "revoked", self.continuation.chain_end(env, S.REVOKED, started, error), revoked
            )
        if env.expires is not None and started > env.expires:
            late = started - env.expires
            error = ErrorInfo("TaskExpired", f"expired {late} ms before it could start")
            expired = self.results.result_output(env, TaskStatus.EXPIRED, started, None, error)
            return staged(
                "expired", self.continuation.chain_end(env, S.EXPIRED, started, error), expired
            )
        try:
            args, kwargs = task.decode_args(env.args)
        except (DecodeError, ArgumentError) as exc:
            return self.outcomes.dead_letter_outcome(rec, "bad-arguments", exc, env)
        if task.track_started and self._emit_early is not None:
            self._emit_early(
                self.results.result_output(env, TaskStatus.STARTED, started, None, None)
            )
        return Call(rec, env, task, args, kwargs, started)

    def _follow_on(
        self, rec: Record, outcome: Outcome, trace: str | None, replay: bytes | None
    ) -> Outcome:
        """The follow-on task events (next chain step, retry, error callbacks, dead letter)
        carry the task's ``traceparent`` (``trace``: its span's, or the one it came with); a
        replayed record's (``replay``: its replay header) stay marked as the replay, so they
        too run although their deterministic ids may have a final result from the first run."""
        if replay is None and trace is None:
            return outcome
        prefix = task_topic(self._ns, "")
        tp = trace.encode() if trace is not None else None

        def mark(o: Output) -> Output:
            to_task = o.topic.startswith(prefix)
            if tp is not None and (to_task or o.topic == self._chords):  # a chord's join
                o = carry_traceparent(o, tp)  # carries it on to the chord's callback
            if to_task and replay is not None and header(o.headers, REPLAY_HEADER) is None:
                o = dataclasses.replace(o, headers=[*o.headers, (REPLAY_HEADER, replay)])
            return o

        return dataclasses.replace(
            outcome,
            outputs=tuple(map(mark, outcome.outputs)),
            then=tuple(map(mark, outcome.then)),
        )

    def close(self) -> None:
        self.results.close()

    def _context(self, rec: Record, env: Envelope, trace: str | None) -> TaskContext:
        return TaskContext(
            id=env.id,
            name=env.task,
            queue=env.queue,
            attempt=env.attempt,
            key=rec.key,
            root_id=env.root_id,
            parent_id=env.parent_id,
            worker_id=self.worker_id,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            traceparent=trace,
        )


def _incoming(rec: Record) -> tuple[str | None, bytes | None]:
    """The record's ``traceparent``, checked (what :func:`task_span` yields without a span),
    and its replay header, read in one pass."""
    raw, replay = header_pair(rec.headers, TRACEPARENT, REPLAY_HEADER)
    return (checked_traceparent(raw) if raw is not None else None), replay


def _as_local(exc: Exception) -> Exception:
    """A child process's error as an instance of its original type when that is a builtin
    exception (so ``retry_on=(ConnectionError,)`` matches), else the :class:`ChildError`."""
    if isinstance(exc, ChildError):
        cls = getattr(builtins, exc.type_name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            try:
                local = cls(exc.message)
            except Exception:
                return exc
            local.__notes__ = [exc.remote_traceback]
            return local
    return exc
