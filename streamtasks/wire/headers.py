"""The ``st-*`` record headers: every name, and the builders and parsers of the header sets.

Every header streamtasks writes or reads is named here once; modules use these constants (or
the builders) instead of literals. A header set that is written in one place and read in
another has one type with both directions: :func:`task_headers` (what a task record carries)
and :class:`DeadLetterHeaders` (what a dead letter carries, :meth:`~DeadLetterHeaders.write`
and :meth:`~DeadLetterHeaders.parse`).

Invariants: every name starts with :data:`PREFIX`, which marks streamtasks' own headers (a
redrive or replay drops and rewrites them, user headers such as ``traceparent`` are kept).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from streamtasks.errors import ArgumentError

if TYPE_CHECKING:
    from streamtasks.wire.envelope import Envelope

__all__ = [
    "ATTEMPT",
    "ATTEMPTS",
    "CHORD",
    "DLQ_REASON",
    "DLQ_TIMESTAMP",
    "ERROR_MESSAGE",
    "ERROR_TYPE",
    "FIRST_FAILURE",
    "ID",
    "KIND",
    "LAST_FAILURE",
    "NOT_BEFORE",
    "ORIGIN_OFFSET",
    "ORIGIN_PARTITION",
    "ORIGIN_TOPIC",
    "PREFIX",
    "REDRIVEN_FROM",
    "REDRIVEN_TO",
    "REPLAY",
    "REPLAY_OF",
    "REPLAY_ORIGIN",
    "REVOKED_AT",
    "STATUS",
    "TASK",
    "TASK_HEADERS",
    "TRACEBACK",
    "TRACEPARENT",
    "VALUE_DROPPED",
    "WORKER_ID",
    "DeadLetterHeaders",
    "HeaderList",
    "header",
    "is_own",
    "parse_int",
    "task_headers",
    "task_headers_of",
    "user_headers",
]

#: a header list as confluent-kafka takes it (same shape as ``wire.topics.Headers``)
HeaderList = list[tuple[str, str | bytes | None]]

#: the prefix of every streamtasks header
PREFIX: Final = "st-"

# -- on task records ---------------------------------------------------------------------
#: the task name
TASK: Final = "st-task"
#: the task id
ID: Final = "st-id"
#: the attempt number (1 for the first run)
ATTEMPT: Final = "st-attempt"
#: epoch ms before which the task must not run (delayed tasks and retries in a tier)
NOT_BEFORE: Final = "st-not-before"
#: epoch ms of the first failure of the task (carried across retries)
FIRST_FAILURE: Final = "st-first-failure"
#: the headers of a task record that describe the task itself (rewritten on re-publishing)
TASK_HEADERS: Final[frozenset[str]] = frozenset({TASK, ID, ATTEMPT, NOT_BEFORE, FIRST_FAILURE})

# -- trace context (W3C, not ours: a re-publish keeps it) ---------------------------------
#: W3C Trace Context ``traceparent`` (``00-<trace id>-<parent span id>-<flags>``): set by
#: ``send()``, continued by the worker's task span and carried to the task's follow-on records
TRACEPARENT: Final = "traceparent"

# -- on result and chord records -----------------------------------------------------------
#: the status of a result (``PENDING``, ``SUCCESS``, ``FAILURE`` ...)
STATUS: Final = "st-status"
#: the chord id of a chord member outcome
CHORD: Final = "st-chord"
#: on a revocation record: when it was revoked (epoch ms)
REVOKED_AT: Final = "st-revoked-at"

# -- on {ns}.events records ----------------------------------------------------------------
#: what an events record is (``task`` or ``heartbeat``, see :mod:`streamtasks.wire.events`),
#: so that a reader can skip kinds without decoding them
KIND: Final = "st-kind"

# -- on dead letters -----------------------------------------------------------------------
DLQ_REASON: Final = "st-dlq-reason"
ERROR_TYPE: Final = "st-error-type"
ERROR_MESSAGE: Final = "st-error-message"
TRACEBACK: Final = "st-traceback"
ATTEMPTS: Final = "st-attempts"
LAST_FAILURE: Final = "st-last-failure"
ORIGIN_TOPIC: Final = "st-origin-topic"
ORIGIN_PARTITION: Final = "st-origin-partition"
ORIGIN_OFFSET: Final = "st-origin-offset"
WORKER_ID: Final = "st-worker-id"
#: why the record's value was dropped (it was too large to dead-letter whole)
VALUE_DROPPED: Final = "st-value-dropped"
#: on a DLQ state marker: the marked dead letter's timestamp (ms)
DLQ_TIMESTAMP: Final = "st-dlq-timestamp"
#: on a redriven task: ``dlq:partition:offset`` of the dead letter it came from
REDRIVEN_FROM: Final = "st-redriven-from"
#: on a redrive marker: where the dead letter was sent
REDRIVEN_TO: Final = "st-redriven-to"

# -- on replayed records -------------------------------------------------------------------
#: On a task event that a replay enqueued: the replay id. Workers run such an event even when
#: its id already has a final result, and carry the header on to its follow-on task events.
REPLAY: Final = "st-replay"
#: On a replayed event: ``topic:partition:offset`` of the original record.
REPLAY_ORIGIN: Final = "st-replay-origin"
#: On an event replayed under a fresh id (``--new-ids``): the original task id.
REPLAY_OF: Final = "st-replay-of"


def header(headers: HeaderList | None, name: str) -> bytes | None:
    """The last value of header ``name`` (as bytes), or None."""
    found: bytes | None = None
    for key, value in headers or ():
        if key == name:
            found = value.encode() if isinstance(value, str) else value
    return found


def header_pair(
    headers: HeaderList | None, first: str, second: str
) -> tuple[bytes | None, bytes | None]:
    """:func:`header` of two names, in one pass over the headers."""
    a: bytes | str | None = None
    b: bytes | str | None = None
    for key, value in headers or ():
        if key == first:
            a = value
        elif key == second:
            b = value
    return (
        a.encode() if isinstance(a, str) else a,
        b.encode() if isinstance(b, str) else b,
    )


def is_own(name: str) -> bool:
    """True for a streamtasks header (one a re-publish drops and rewrites)."""
    return name.startswith(PREFIX)


def task_headers(env: Envelope, *, attempt: int | None = None) -> HeaderList:
    """The headers every task record starts with: its task name, id and attempt (``attempt``
    overrides the envelope's, for a retry being produced)."""
    return task_headers_of(env.task, env.id, env.attempt if attempt is None else attempt)


def task_headers_of(task: str, task_id: str, attempt: int) -> HeaderList:
    """:func:`task_headers` from the three values (an envelope in its Avro form)."""
    return [(TASK, task.encode()), (ID, task_id.encode()), (ATTEMPT, str(attempt).encode())]


def user_headers(headers: Mapping[str, str | bytes] | None) -> HeaderList:
    """A sender's own headers (``apply_async(headers=...)``), checked: str or bytes values, no
    name with the reserved ``st-`` prefix (an :class:`ArgumentError` says which)."""
    out: HeaderList = []
    for name, value in (headers or {}).items():
        if is_own(name):
            raise ArgumentError(f"header {name!r}: the 'st-' prefix is reserved for streamtasks")
        if isinstance(value, str):
            out.append((name, value.encode()))
        elif isinstance(value, bytes):
            out.append((name, value))
        else:
            raise ArgumentError(f"header {name!r} must be str or bytes, got {type(value).__name__}")
    return out


@dataclass(frozen=True, slots=True)
class DeadLetterHeaders:
    """What a dead letter's headers say about why and where it failed."""

    reason: str
    error_type: str | None = None
    error_message: str | None = None
    traceback: str | None = None
    attempts: int | None = None
    first_failure_ms: int | None = None
    last_failure_ms: int | None = None
    origin_topic: str | None = None
    origin_partition: int | None = None
    origin_offset: int | None = None
    worker_id: str | None = None
    value_dropped: str | None = None
    task_id: str | None = None
    task: str | None = None

    def write(self) -> HeaderList:
        """The headers, in the order the worker writes them (absent fields left out)."""
        fields: list[tuple[str, object]] = [
            (DLQ_REASON, self.reason),
            (ERROR_TYPE, self.error_type),
            (ERROR_MESSAGE, self.error_message),
            (ATTEMPTS, self.attempts),
            (FIRST_FAILURE, self.first_failure_ms),
            (LAST_FAILURE, self.last_failure_ms),
            (ORIGIN_TOPIC, self.origin_topic),
            (ORIGIN_PARTITION, self.origin_partition),
            (ORIGIN_OFFSET, self.origin_offset),
            (WORKER_ID, self.worker_id),
            (TRACEBACK, self.traceback),
            (VALUE_DROPPED, self.value_dropped),
        ]
        return [(k, str(v).encode()) for k, v in fields if v is not None]

    @classmethod
    def parse(cls, headers: Mapping[str, str]) -> DeadLetterHeaders:
        """Read them from decoded headers; never raises (a bad number reads as None, a
        missing reason as ``unknown``)."""
        return cls(
            reason=headers.get(DLQ_REASON) or "unknown",
            error_type=headers.get(ERROR_TYPE),
            error_message=headers.get(ERROR_MESSAGE),
            traceback=headers.get(TRACEBACK),
            attempts=parse_int(headers.get(ATTEMPTS)),
            first_failure_ms=parse_int(headers.get(FIRST_FAILURE)),
            last_failure_ms=parse_int(headers.get(LAST_FAILURE)),
            origin_topic=headers.get(ORIGIN_TOPIC),
            origin_partition=parse_int(headers.get(ORIGIN_PARTITION)),
            origin_offset=parse_int(headers.get(ORIGIN_OFFSET)),
            worker_id=headers.get(WORKER_ID),
            value_dropped=headers.get(VALUE_DROPPED),
            task_id=headers.get(ID),
            task=headers.get(TASK),
        )


def parse_int(text: str | None) -> int | None:
    """A header's decimal text as an int; None when absent or not a number."""
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None
