"""What a consumed record turns into: the records to produce, and the failure paths.

The vocabulary of the consuming side — :class:`Record` (consumed), :class:`Output` (to
produce), :class:`Outcome` (the outputs of one record, in the order they must be
acknowledged) — and the builders of outcome records: :class:`Results` writes result records
(and marks deterministic ids that reached a final state in the fired index), :class:`Outcomes`
the retry, FAILURE and dead-letter outcomes and the error info they carry. No Kafka client.

Invariants: dead letters carry the consumed bytes and key unchanged; follow-up records
(retries, dead letters) go to the topics of the queue the record was read from, never to a
topic named by the record's content; the failure path is decided by the pure
:func:`streamtasks.retry.decide`; :meth:`Outcomes.dead_letter` never raises (an offset must
finish), and an unexpected exception becomes a dead letter with reason ``internal-error``.
"""

from __future__ import annotations

import dataclasses
import random
import threading
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import structlog

from streamtasks.errors import ResultTooLargeError, StreamtasksError
from streamtasks.retry import decide
from streamtasks.wire import headers as hdr
from streamtasks.wire.envelope import Envelope, ErrorInfo, ResultRecord, TaskStatus, now_ms
from streamtasks.wire.headers import TRACEPARENT, header, task_headers
from streamtasks.wire.quickinit import quick_init
from streamtasks.wire.topics import Headers, dlq_topic, queue_of, results_topic, retry_topic
from streamtasks.worker.indexes import FiredIndex
from streamtasks.worker.pools.processes import ChildError

S = TaskStatus

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.task import Task
    from streamtasks.worker.continuation import Continuation

__all__ = [
    "Outcome",
    "OutcomeKind",
    "Outcomes",
    "Output",
    "Record",
    "Results",
    "carry_traceparent",
    "error_info",
    "result_refused",
    "staged",
]

log = structlog.get_logger("streamtasks.worker")

TRACEBACK_LIMIT = 8192
#: per status: whether it is final, its header value (looked up per result, not computed)
_FINAL = frozenset(s for s in TaskStatus if s.is_final)
_STATUS_BYTES = {s: s.value.encode() for s in TaskStatus}
OutcomeKind = Literal["success", "failure", "retry", "dead", "expired", "skipped", "revoked"]


@quick_init
@dataclass(frozen=True, slots=True)
class Record:
    """A consumed task record."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    #: the record's timestamp (epoch ms) as the consumer reported it, when known
    timestamp: int | None = None

    def log_fields(self) -> dict[str, object]:
        return {"topic": self.topic, "partition": self.partition, "offset": self.offset}


@quick_init
@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    #: the result record a result output's value encodes (set by :meth:`Results.result_output`:
    #: the task events read it instead of decoding the value again)
    result: ResultRecord | None = dataclasses.field(default=None, compare=False, repr=False)


@quick_init
@dataclass(frozen=True, slots=True)
class Outcome:
    """What a record turned into. ``then`` is produced only after every one of ``outputs`` was
    acknowledged: a task's final result goes last when other outputs (the next chain step, a
    chord member's outcome, error callbacks) depend on it, because a task id with a final
    result is skipped when redelivered — so that result must imply the rest was written."""

    kind: OutcomeKind
    outputs: tuple[Output, ...]
    then: tuple[Output, ...] = ()
    #: for hooks: the retry tier (``retry``) or the dead-letter reason (``dead``)
    detail: str | None = None


def staged(kind: OutcomeKind, first: tuple[Output, ...], final: Output) -> Outcome:
    """``final`` after ``first`` (when there is a first)."""
    return Outcome(kind, first, (final,)) if first else Outcome(kind, (final,))


def carry_traceparent(out: Output, traceparent: bytes) -> Output:
    """``out`` carrying ``traceparent`` (instead of any it had): a follow-on record of a task
    continues that task's trace."""
    headers = [(k, v) for k, v in out.headers if k != TRACEPARENT]
    headers.append((TRACEPARENT, traceparent))
    return dataclasses.replace(out, headers=headers)


class Results:
    """Writes a worker's result records; owns the (lazily started) fired index."""

    def __init__(self, app: App, worker_id: str, fired: FiredIndex | None = None) -> None:
        self.app = app
        self.worker_id = worker_id
        self._fired = fired
        self._index_lock = threading.Lock()
        self._topic = results_topic(app.settings.namespace)

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
        """The result record of ``env`` in ``status``; a final state of a deterministic id
        (a scheduled fire, a chain step) is added to the fired index."""
        if status in _FINAL and FiredIndex.is_fire(env.id):
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
        headers: Headers = [(hdr.TASK, env.task.encode()), (hdr.STATUS, _STATUS_BYTES[status])]
        return Output(self._topic, env.id.encode(), value, headers, record)


class Outcomes:
    """Builds the retry, FAILURE and dead-letter outcomes of one worker's records."""

    def __init__(
        self,
        app: App,
        worker_id: str,
        results: Results,
        continuation: Continuation,
        rng: random.Random | None = None,
    ) -> None:
        self.app = app
        self.worker_id = worker_id
        self._results = results
        self._continuation = continuation
        self._rng = rng or random.Random()
        self._ns = app.settings.namespace

    def failed(
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
                *task_headers(env, attempt=again.attempt),
                (hdr.NOT_BEFORE, str(due).encode()),
                (hdr.FIRST_FAILURE, header(rec.headers, hdr.FIRST_FAILURE) or _now_bytes()),
            ]
            retry_record = Output(
                retry_topic(self._ns, queue_of(rec.topic, self._ns), verdict.tier),
                rec.key,
                self.app.codec.encode(self.app.envelope_schema, again.to_avro()),
                headers,
            )
            status = self._results.result_output(env, TaskStatus.RETRY, started, None, error)
            return Outcome("retry", (retry_record, status), detail=str(verdict.tier))
        if verdict.action == "dead" and retry:
            return self.dead_letter_outcome(
                rec, verdict.reason, exc, env, error=error, started=started
            )
        log.warning("task failed", error=repr(exc), reason=verdict.reason, **fields)
        failed = self._results.result_output(env, TaskStatus.FAILURE, started, None, error)
        first = (
            *self._continuation.chain_end(env, S.FAILURE, started, error),
            *self._continuation.errbacks(env, S.FAILURE, error),
        )
        return staged("failure", first, failed)

    def dead_letter_outcome(
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
            (hdr.DLQ_REASON, reason.encode()),
            (hdr.ERROR_TYPE, error.type.encode()),
            (hdr.ERROR_MESSAGE, error.message[:2000].encode()),
            (hdr.ATTEMPTS, str(env.attempt if env else 1).encode()),
            (hdr.FIRST_FAILURE, header(rec.headers, hdr.FIRST_FAILURE) or now),
            (hdr.LAST_FAILURE, now),
            (hdr.ORIGIN_TOPIC, rec.topic.encode()),
            (hdr.ORIGIN_PARTITION, str(rec.partition).encode()),
            (hdr.ORIGIN_OFFSET, str(rec.offset).encode()),
            (hdr.WORKER_ID, self.worker_id.encode()),
        ]
        if error.traceback:
            headers.append((hdr.TRACEBACK, error.traceback[-TRACEBACK_LIMIT:].encode()))
        letter = Output(
            dlq_topic(self._ns, queue_of(rec.topic, self._ns)), rec.key, rec.value, headers
        )
        if env is None:
            return Outcome("dead", (letter,), detail=reason)
        # someone may be waiting on this task id: tell them it is dead (last, see Outcome)
        dead = self._results.result_output(env, TaskStatus.DEAD, started, None, error)
        if not follow:
            return Outcome("dead", (letter,), (dead,), detail=reason)
        after = (
            *self._continuation.chain_end(env, S.DEAD, started, error),
            *self._continuation.errbacks(env, S.DEAD, error),
        )
        return Outcome("dead", (letter, *after), (dead,), detail=reason)

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
                return self.dead_letter_outcome(rec, reason, exc, env, follow=follow)
            except Exception as again:
                log.error("dead letter failed; trying a plainer one", error=repr(again))
        return self.dead_letter_outcome(rec, reason, exc, None)


def _carry_headers(headers: Headers | None, *, keep_task_headers: bool = False) -> Headers:
    """User headers (and, for dead letters, the task's own) carried to a follow-up record."""
    out: Headers = []
    for key, value in headers or ():
        if hdr.is_own(key) and not (keep_task_headers and key in hdr.TASK_HEADERS):
            continue
        if keep_task_headers and key == hdr.FIRST_FAILURE:
            continue  # written afresh below
        out.append((key, value))
    return out


def _now_bytes() -> bytes:
    return str(now_ms()).encode()


def error_info(exc: BaseException) -> ErrorInfo:
    if isinstance(exc, ChildError):
        return ErrorInfo(exc.type_name, exc.message, exc.remote_traceback[-TRACEBACK_LIMIT:])
    notes = getattr(exc, "__notes__", None)
    if notes:  # a child's traceback carried over by _as_local
        return ErrorInfo(type(exc).__qualname__, str(exc), str(notes[0])[-TRACEBACK_LIMIT:])
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > TRACEBACK_LIMIT:
        tb = "...\n" + tb[-TRACEBACK_LIMIT:]
    return ErrorInfo(type(exc).__qualname__, str(exc), tb)


def result_refused(app: App, out: Output, detail: str) -> Output | None:
    """A result record the client or broker refused as too large (their limit is lower
    than ours): the task's FAILURE with :class:`ResultTooLargeError` instead, so whoever
    waits on it is told. None when ``out`` holds no value to drop."""
    try:
        _, raw = app.codec.decode(out.value, expect=app.result_schema)
    except StreamtasksError:
        return None
    rec = ResultRecord.from_avro(raw)
    if rec.value is None:
        return None
    too_large = ResultTooLargeError(
        f"the result of task {rec.task!r} is {len(out.value or b'')} bytes, refused by "
        f"the client or broker ({detail}); max_payload_bytes="
        f"{app.settings.max_payload_bytes} is over their limit: lower it or raise "
        "message.max.bytes (client) and max.message.bytes (topic)"
    )
    failed = dataclasses.replace(
        rec, status=TaskStatus.FAILURE, value=None, error=error_info(too_large)
    )
    value = app.codec.encode(app.result_schema, failed.to_avro())
    headers: Headers = [(hdr.TASK, rec.task.encode()), (hdr.STATUS, b"FAILURE")]
    return Output(out.topic, out.key, value, headers)
