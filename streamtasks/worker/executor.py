"""Running one consumed record: decode it, run its task, and say what must be produced.

This is the part of the worker that runs on task threads. It touches no Kafka client and no
worker state: :meth:`Executor.run` turns a :class:`Record` into an :class:`Outcome`, a list of
:class:`Output` records (result, retry record, dead letter) that the worker produces; the
record's offset may be committed once every one of them is acknowledged.

Invariants: every record yields at least one output (so every offset eventually finishes) —
an unexpected exception too (:meth:`Executor.internal_error`: a dead letter with reason
``internal-error`` and the traceback); dead letters carry the consumed bytes and key unchanged;
follow-up records (retries, dead letters) go to the topics of the queue the record was read
from, never to a topic named by the record's content; the failure path is decided by the
pure :func:`streamtasks.retry.decide`.
"""

from __future__ import annotations

import asyncio
import builtins
import dataclasses
import functools
import random
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from streamtasks.context import TaskContext, _current, _Pending
from streamtasks.errors import (
    ArgumentError,
    DecodeError,
    ResultTooLargeError,
    StreamtasksError,
    UnknownSchemaError,
    UnknownTaskError,
)
from streamtasks.retry import decide
from streamtasks.signals import SoftTimeLimitExceeded
from streamtasks.wire.envelope import Envelope, ErrorInfo, ResultRecord, TaskStatus, now_ms
from streamtasks.wire.topics import (
    REPLAY_HEADER,
    Headers,
    chords_topic,
    dlq_topic,
    results_topic,
    retry_topic,
    task_topic,
)
from streamtasks.worker.indexes import FiredIndex, RevokedIndex
from streamtasks.worker.pools.processes import ChildError, ProcessPool
from streamtasks.workflows import TaskFailure, errback_id, parse_step_id, step_id

S = TaskStatus

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.task import Task

__all__ = ["Call", "Executor", "Outcome", "Output", "Record", "header"]

log = structlog.get_logger("streamtasks.worker")

_TRACEBACK_LIMIT = 8192
OutcomeKind = Literal["success", "failure", "retry", "dead", "expired", "skipped", "revoked"]
#: Produces an output the offset does not wait for (a STARTED state).
EmitEarly = Callable[["Output"], None]


@dataclass(frozen=True, slots=True)
class Record:
    """A consumed task record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None

    def log_fields(self) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class Call:
    """A decoded task call, ready to run."""

    record: Record
    env: Envelope
    task: Task[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    started: int


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a record turned into. ``then`` is produced only after every one of ``outputs`` was
    acknowledged: a task's final result goes last when other outputs (the next chain step, a
    chord member's outcome, error callbacks) depend on it, because a task id with a final
    result is skipped when redelivered — so that result must imply the rest was written."""

    kind: OutcomeKind
    outputs: tuple[Output, ...]
    then: tuple[Output, ...] = ()


def _staged(kind: OutcomeKind, first: tuple[Output, ...], final: Output) -> Outcome:
    return Outcome(kind, first, (final,)) if first else Outcome(kind, (final,))


def header(headers: Headers | None, name: str) -> bytes | None:
    """The last value of header ``name`` (as bytes), or None."""
    found: bytes | None = None
    for key, value in headers or ():
        if key == name:
            found = value.encode() if isinstance(value, str) else value
    return found


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
        self._fired = fired
        self._index_lock = threading.Lock()
        self._revoked = revoked
        self._emit_early = emit_early
        self._processes = processes
        self.worker_id = worker_id
        self._rng = rng or random.Random()
        self._ns = app.settings.namespace
        self._results = results_topic(self._ns)

    def run(self, rec: Record) -> Outcome:
        """Decode and run a synchronous task (on the calling thread)."""
        return self._replayed(rec, self._run(rec))

    def _run(self, rec: Record) -> Outcome:
        call = self.prepare(rec)
        if isinstance(call, Outcome):
            return call
        if call.task.pool == "process" and self._processes is not None:
            return self._run_in_process(call)
        token = _current.set(_Pending(functools.partial(self._context, rec, call.env)))
        try:
            value = call.task.func(*call.args, **call.kwargs)
        except Exception as exc:
            return self._failed(rec, call.env, call.task, call.started, exc)
        finally:
            _current.reset(token)
        return self.finish(call, value)

    async def run_async(self, rec: Record) -> Outcome:
        """Decode and await an ``async def`` task (on the worker's event loop).

        A ``soft_time_limit`` raises :class:`SoftTimeLimitExceeded` inside the coroutine at
        its next ``await`` (so ``finally`` blocks run), and counts as a failure.
        """
        return self._replayed(rec, await self._run_async(rec))

    async def _run_async(self, rec: Record) -> Outcome:
        call = self.prepare(rec)
        if isinstance(call, Outcome):
            return call
        # this asyncio task's own context
        _current.set(_Pending(functools.partial(self._context, rec, call.env)))
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
            return self._failed(rec, call.env, call.task, call.started, exc)
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
            return self._failed(call.record, call.env, task, call.started, _as_local(exc))
        value = task.decode_result(payload) if call.env.continuation else None
        return self._succeeded(call, payload, value)

    def finish(self, call: Call, value: object) -> Outcome:
        try:
            payload = call.task.encode_result(value)
        except ArgumentError as exc:  # the return value does not fit the declared type
            return self._failed(call.record, call.env, call.task, call.started, exc)
        return self._succeeded(call, payload, value)

    def _succeeded(self, call: Call, payload: bytes, value: object) -> Outcome:
        env = call.env
        result = self.result_output(env, TaskStatus.SUCCESS, call.started, payload, None)
        limit = self.app.settings.max_payload_bytes
        size = len(result.value or b"")
        if size > limit:  # the result topic would refuse it: the task fails, get() says why
            too_large = ResultTooLargeError(
                f"the result of task {env.task!r} is {size} bytes, over "
                f"max_payload_bytes={limit}; return large data by reference (e.g. a URL or "
                "object key) or raise max_payload_bytes"
            )
            return self._failed(call.record, env, call.task, call.started, too_large, retry=False)
        if not env.continuation:
            return Outcome("success", (result,))
        if self.is_join(env.continuation[0]):
            member = self._member_outcome(env, TaskStatus.SUCCESS, payload, None)
            return Outcome("success", (member,), (result,))
        try:
            step = self._next_step(env, value)
        except (StreamtasksError, ValueError, TypeError, KeyError) as exc:
            # the chain cannot go on (e.g. the result does not fit the next step's first
            # parameter): this step succeeded, the chain failed
            error = error_info(exc)
            final = self._chain_end(env, TaskStatus.FAILURE, call.started, error)
            errbacks = self.errbacks(env, TaskStatus.FAILURE, error)
            return Outcome("success", (*final, *errbacks), (result,))
        return Outcome("success", (step,), (result,))

    def is_join(self, frame: bytes) -> bool:
        """Is this continuation frame a chord join (else: a chain step)?"""
        return frame[2:10] == self.app.chord_join_schema.fingerprint

    def decode_step(self, frame: bytes) -> tuple[Task[..., Any], dict[str, Any]]:
        """A TaskSignature frame: the task and its partial argument record."""
        app = self.app
        _, sig = app.codec.decode(frame, expect=app.signature_schema)
        task = app.tasks.get(sig["task"])
        if task is None or task.partial_schema is None:
            raise UnknownTaskError(f"workflow task {sig['task']!r} is not a usable task here")
        _, partial = app.codec.decode(sig["partial"], expect=task.partial_schema)
        return task, partial

    def _next_step(self, env: Envelope, value: object) -> Output:
        task, partial = self.decode_step(env.continuation[0])
        args = self.app.codec.encode(task.args_schema, task.signature.complete(partial, value))
        root, index = parse_step_id(env.id) or (env.root_id or env.id, 0)
        nxt = Envelope(
            id=step_id(root, index + 1),
            task=task.name,
            queue=task.queue,
            args=args,
            root_id=root,
            parent_id=env.id,
            workflow_id=env.workflow_id,
            continuation=env.continuation[1:],
            link_error=env.link_error,
        )
        return self.task_output(nxt)

    def task_output(self, env: Envelope) -> Output:
        """A task event produced by a worker (a chain step, a chord callback, an errback);
        keyed by its id, whose determinism makes a re-produced copy recognisable."""
        headers: Headers = [
            ("st-task", env.task.encode()),
            ("st-id", env.id.encode()),
            ("st-attempt", str(env.attempt).encode()),
        ]
        value = self.app.codec.encode(self.app.envelope_schema, env.to_avro())
        return Output(task_topic(self._ns, env.queue), env.id.encode(), value, headers)

    def errbacks(self, env: Envelope, status: TaskStatus, error: ErrorInfo) -> tuple[Output, ...]:
        """The error callbacks of a task that ended in ``status`` (FAILURE or DEAD)."""
        return self.errback_outputs(
            env.link_error, env.id, env.task, env.attempt, env.root_id, status, error
        )

    def errback_outputs(
        self,
        frames: tuple[bytes, ...] | list[bytes],
        task_id: str,
        task_name: str,
        attempts: int,
        root_id: str | None,
        status: TaskStatus,
        error: ErrorInfo,
    ) -> tuple[Output, ...]:
        failure = TaskFailure(
            task_id=task_id,
            task=task_name,
            status=status.value,
            error_type=error.type,
            message=error.message,
            traceback=error.traceback,
            attempts=attempts,
        )
        out: list[Output] = []
        for i, frame in enumerate(frames):
            try:
                task, partial = self.decode_step(frame)
                args = self.app.codec.encode(
                    task.args_schema, task.signature.complete(partial, failure)
                )
            except (StreamtasksError, ValueError, TypeError, KeyError) as exc:
                log.error("error callback not sent", error=str(exc), task_id=task_id)
                continue
            errback = Envelope(
                id=errback_id(task_id, i),
                task=task.name,
                queue=task.queue,
                args=args,
                root_id=root_id or task_id,
                parent_id=task_id,
            )
            out.append(self.task_output(errback))
        return tuple(out)

    def _member_outcome(
        self, env: Envelope, status: TaskStatus, payload: bytes | None, error: ErrorInfo | None
    ) -> Output:
        """A chord member's final outcome, for the join on ``{ns}.chords``."""
        app = self.app
        frame = env.continuation[0]
        _, join = app.codec.decode(frame, expect=app.chord_join_schema)
        record = {
            "join": frame,
            "member_id": env.id,
            "task": env.task,
            "status": status.value,
            "value": payload,
            "error": None if error is None else error.to_avro(),
            "finished_at": now_ms(),
        }
        chord_id = str(join["chord_id"])
        headers: Headers = [("st-chord", chord_id.encode()), ("st-status", status.value.encode())]
        value = app.codec.encode(app.chord_member_schema, record)
        return Output(chords_topic(self._ns), chord_id.encode(), value, headers)

    def _chain_end(
        self, env: Envelope, status: TaskStatus, started: int | None, error: ErrorInfo | None
    ) -> tuple[Output, ...]:
        """When a workflow task ends without success (``status``): a chain's last step says
        so too (FAILURE); a chord member reports it to the join."""
        if not env.continuation:
            return ()
        if self.is_join(env.continuation[0]):
            return (self._member_outcome(env, status, None, error),)
        root, index = parse_step_id(env.id) or (env.root_id or env.id, 0)
        last = dataclasses.replace(
            env, id=step_id(root, index + len(env.continuation)), continuation=()
        )
        return (self.result_output(last, TaskStatus.FAILURE, started, None, error),)

    def prepare(self, rec: Record) -> Call | Outcome:
        """Decode ``rec`` into a call, or the outcome that replaces running it (DLQ, EXPIRED)."""
        app = self.app
        limit = app.settings.max_payload_bytes
        if rec.value is not None and len(rec.value) > limit:
            too_big = ValueError(f"message of {len(rec.value)} bytes exceeds {limit} bytes")
            return self._dead_letter(rec, "oversize", too_big, None)
        try:
            _, raw = app.codec.decode(rec.value, expect=app.envelope_schema)
        except UnknownSchemaError as exc:
            return self._dead_letter(rec, "unknown-schema", exc, None)
        except DecodeError as exc:
            return self._dead_letter(rec, "undecodable", exc, None)
        env = Envelope.from_avro(raw)
        task = app.tasks.get(env.task)
        if task is None:
            unknown = LookupError(f"task {env.task!r} is not registered in app {app.name!r}")
            return self._dead_letter(rec, "unknown-task", unknown, env)
        replay = header(rec.headers, REPLAY_HEADER) is not None  # a replay runs it again
        if FiredIndex.is_fire(env.id) and not replay and self.fired_index().done(env.id):
            log.info("skipped: this task id already ran", task_id=env.id, **rec.log_fields())
            return Outcome("skipped", ())
        started = now_ms()
        if self._revoked is not None and self._revoked.contains(env.id):
            error = ErrorInfo("TaskRevoked", "revoked before it started")
            log.info("revoked: not run", task_id=env.id, **rec.log_fields())
            revoked = self.result_output(env, TaskStatus.REVOKED, started, None, error)
            return _staged("revoked", self._chain_end(env, S.REVOKED, started, error), revoked)
        if env.expires is not None and started > env.expires:
            late = started - env.expires
            error = ErrorInfo("TaskExpired", f"expired {late} ms before it could start")
            expired = self.result_output(env, TaskStatus.EXPIRED, started, None, error)
            return _staged("expired", self._chain_end(env, S.EXPIRED, started, error), expired)
        try:
            args, kwargs = task.decode_args(env.args)
        except (DecodeError, ArgumentError) as exc:
            return self._dead_letter(rec, "bad-arguments", exc, env)
        if task.track_started and self._emit_early is not None:
            self._emit_early(self.result_output(env, TaskStatus.STARTED, started, None, None))
        return Call(rec, env, task, args, kwargs, started)

    def _replayed(self, rec: Record, outcome: Outcome) -> Outcome:
        """A replayed record's follow-on task events (next chain step, retry, error callbacks,
        dead letter) stay marked as the replay, so they too run although their deterministic
        ids may have a final result from the first run."""
        replay = header(rec.headers, REPLAY_HEADER)
        if replay is None:
            return outcome
        prefix = task_topic(self._ns, "")

        def mark(outs: tuple[Output, ...]) -> tuple[Output, ...]:
            return tuple(
                dataclasses.replace(o, headers=[*o.headers, (REPLAY_HEADER, replay)])
                if o.topic.startswith(prefix) and header(o.headers, REPLAY_HEADER) is None
                else o
                for o in outs
            )

        return dataclasses.replace(outcome, outputs=mark(outcome.outputs), then=mark(outcome.then))

    # -- failures --------------------------------------------------------------------------
    def _failed(
        self,
        rec: Record,
        env: Envelope,
        task: Task[..., Any],
        started: int,
        exc: Exception,
        *,
        retry: bool = True,
    ) -> Outcome:
        """``retry=False``: a failure that would fail again the same way (no retry)."""
        error = error_info(exc)
        verdict = decide(
            task.retry_policy, exc, env.attempt, self.app.settings.retry_tiers, self._rng
        )
        fields = {"task": env.task, "task_id": env.id, "attempt": env.attempt, **rec.log_fields()}
        if verdict.action == "retry" and retry:
            assert verdict.tier is not None
            due = now_ms() + int(verdict.delay * 1000)
            log.info(
                "task failed; retrying",
                error=repr(exc),
                delay_s=round(verdict.delay, 3),
                tier=verdict.tier,
                **fields,
            )
            again = dataclasses.replace(env, attempt=env.attempt + 1, eta=due, last_error=error)
            headers = _carry_headers(rec.headers)
            headers += [
                ("st-task", env.task.encode()),
                ("st-id", env.id.encode()),
                ("st-attempt", str(again.attempt).encode()),
                ("st-not-before", str(due).encode()),
                ("st-first-failure", header(rec.headers, "st-first-failure") or _now_bytes()),
            ]
            retry_record = Output(
                retry_topic(self._ns, _queue_of(rec.topic, self._ns), verdict.tier),
                rec.key,
                self.app.codec.encode(self.app.envelope_schema, again.to_avro()),
                headers,
            )
            status = self.result_output(env, TaskStatus.RETRY, started, None, error)
            return Outcome("retry", (retry_record, status))
        if verdict.action == "dead" and retry:
            return self._dead_letter(rec, verdict.reason, exc, env, error=error, started=started)
        log.warning("task failed", error=repr(exc), reason=verdict.reason, **fields)
        failed = self.result_output(env, TaskStatus.FAILURE, started, None, error)
        first = (
            *self._chain_end(env, S.FAILURE, started, error),
            *self.errbacks(env, S.FAILURE, error),
        )
        return _staged("failure", first, failed)

    def _dead_letter(
        self,
        rec: Record,
        reason: str,
        exc: BaseException,
        env: Envelope | None,
        *,
        error: ErrorInfo | None = None,
        started: int | None = None,
        follow: bool = True,
    ) -> Outcome:
        """The dead letter (to the DLQ of the queue ``rec`` was read from), and with an
        envelope its DEAD result (and, with ``follow``, its chain end and error callbacks)."""
        error = error or error_info(exc)
        log.error(
            "dead-lettered",
            reason=reason,
            error=str(exc),
            task=env.task if env else None,
            task_id=env.id if env else None,
            **rec.log_fields(),
        )
        now = _now_bytes()
        headers = _carry_headers(rec.headers, keep_task_headers=True)
        headers += [
            ("st-dlq-reason", reason.encode()),
            ("st-error-type", error.type.encode()),
            ("st-error-message", error.message[:2000].encode()),
            ("st-attempts", str(env.attempt if env else 1).encode()),
            ("st-first-failure", header(rec.headers, "st-first-failure") or now),
            ("st-last-failure", now),
            ("st-origin-topic", rec.topic.encode()),
            ("st-origin-partition", str(rec.partition).encode()),
            ("st-origin-offset", str(rec.offset).encode()),
            ("st-worker-id", self.worker_id.encode()),
        ]
        if error.traceback:
            headers.append(("st-traceback", error.traceback[-_TRACEBACK_LIMIT:].encode()))
        letter = Output(
            dlq_topic(self._ns, _queue_of(rec.topic, self._ns)), rec.key, rec.value, headers
        )
        if env is None:
            return Outcome("dead", (letter,))
        # someone may be waiting on this task id: tell them it is dead (last, see Outcome)
        dead = self.result_output(env, TaskStatus.DEAD, started, None, error)
        if not follow:
            return Outcome("dead", (letter,), (dead,))
        after = (*self._chain_end(env, S.DEAD, started, error), *self.errbacks(env, S.DEAD, error))
        return Outcome("dead", (letter, *after), (dead,))

    def internal_error(self, rec: Record, exc: BaseException) -> Outcome:
        """The outcome of a record whose handling raised unexpectedly (a bug, or input no
        check foresaw): a dead letter with reason ``internal-error`` and the traceback."""
        log.error(
            "unexpected error handling a record; dead-lettering it",
            error=repr(exc),
            exc_info=exc,
            **rec.log_fields(),
        )
        return self.dead_letter(rec, "internal-error", exc)

    def dead_letter(self, rec: Record, reason: str, exc: BaseException) -> Outcome:
        """Dead-letter ``rec`` for ``reason``, with a DEAD result when its envelope decodes.
        Never raises (the offset must finish): the follow-ups decode continuation frames,
        which may be what failed, so they are dropped if they raise, then the result."""
        env: Envelope | None
        try:
            _, raw = self.app.codec.decode(rec.value, expect=self.app.envelope_schema)
            env = Envelope.from_avro(raw)
        except Exception:
            env = None
        for follow in (True, False):
            try:
                return self._dead_letter(rec, reason, exc, env, follow=follow)
            except Exception as again:
                log.error("dead letter failed; trying a plainer one", error=repr(again))
        return self._dead_letter(rec, reason, exc, None)

    def result_refused(self, out: Output, detail: str) -> Output | None:
        """A result record the client or broker refused as too large (their limit is lower
        than ours): the task's FAILURE with :class:`ResultTooLargeError` instead, so whoever
        waits on it is told. None when ``out`` holds no value to drop."""
        try:
            _, raw = self.app.codec.decode(out.value, expect=self.app.result_schema)
        except StreamtasksError:
            return None
        rec = ResultRecord.from_avro(raw)
        if rec.value is None:
            return None
        too_large = ResultTooLargeError(
            f"the result of task {rec.task!r} is {len(out.value or b'')} bytes, refused by "
            f"the client or broker ({detail}); max_payload_bytes="
            f"{self.app.settings.max_payload_bytes} is over their limit: lower it or raise "
            "message.max.bytes (client) and max.message.bytes (topic)"
        )
        failed = dataclasses.replace(
            rec, status=TaskStatus.FAILURE, value=None, error=error_info(too_large)
        )
        value = self.app.codec.encode(self.app.result_schema, failed.to_avro())
        headers: Headers = [("st-task", rec.task.encode()), ("st-status", b"FAILURE")]
        return Output(out.topic, out.key, value, headers)

    # -- helpers ---------------------------------------------------------------------------
    def fired_index(self) -> FiredIndex:
        """The index of deterministic ids (scheduled fires, chain steps) that already ran;
        started on first need."""
        with self._index_lock:
            if self._fired is None:
                self._fired = FiredIndex(self.app)
            return self._fired

    def close(self) -> None:
        if self._fired is not None:
            self._fired.close()

    def result_output(
        self,
        env: Envelope,
        status: TaskStatus,
        started: int | None,
        payload: bytes | None,
        error: ErrorInfo | None,
    ) -> Output:
        if status.is_final and FiredIndex.is_fire(env.id):
            self.fired_index().add(env.id)
        record = ResultRecord(
            task_id=env.id,
            task=env.task,
            status=status,
            attempts=env.attempt,
            created_at=env.created_at,
            worker_id=self.worker_id,
            started_at=started,
            finished_at=now_ms(),
            value=payload,
            error=error,
        )
        value = self.app.codec.encode(self.app.result_schema, record.to_avro())
        headers: Headers = [("st-task", env.task.encode()), ("st-status", status.value.encode())]
        return Output(self._results, env.id.encode(), value, headers)

    def _context(self, rec: Record, env: Envelope) -> TaskContext:
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
        )


_TASK_HEADERS = {"st-task", "st-id", "st-attempt", "st-not-before", "st-first-failure"}


def _carry_headers(headers: Headers | None, *, keep_task_headers: bool = False) -> Headers:
    """User headers (and, for dead letters, the task's own) carried to a follow-up record."""
    out: Headers = []
    for key, value in headers or ():
        if key.startswith("st-") and not (keep_task_headers and key in _TASK_HEADERS):
            continue
        if keep_task_headers and key == "st-first-failure":
            continue  # written afresh below
        out.append((key, value))
    return out


def _now_bytes() -> bytes:
    return str(now_ms()).encode()


def _queue_of(topic: str, ns: str) -> str:
    prefix = f"{ns}.tasks."
    queue = topic[len(prefix) :] if topic.startswith(prefix) else topic
    return queue.split(".retry.", 1)[0]


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


def error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, ChildError):
        return ErrorInfo(exc.type_name, exc.message, exc.remote_traceback[-_TRACEBACK_LIMIT:])
    notes = getattr(exc, "__notes__", None)
    if notes:  # a child's traceback carried over by _as_local
        return ErrorInfo(type(exc).__qualname__, str(exc), str(notes[0])[-_TRACEBACK_LIMIT:])
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > _TRACEBACK_LIMIT:
        tb = "...\n" + tb[-_TRACEBACK_LIMIT:]
    return ErrorInfo(type(exc).__qualname__, str(exc), tb)
