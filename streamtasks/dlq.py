"""Dead-letter tooling: read, inspect, redrive and purge one queue's dead-letter topic.

The worker writes a dead letter as the consumed record's original key, bytes and headers plus
``st-dlq-reason``, ``st-error-*``, ``st-attempts``, ``st-*-failure`` and ``st-origin-*`` headers.
Kafka cannot delete single records, so what was done with a dead letter is recorded beside it,
in the compacted topic ``{ns}.tasks.{queue}.dlq.state`` (:func:`dlq_state_topic`): one marker
per dead letter, keyed by its ref ``"<partition>:<offset>"``, value ``redriven`` or ``purged``
(a tombstone means "dead" again). A marker also carries the dead letter's timestamp
(``st-dlq-timestamp``), so markers left from a deleted and recreated DLQ topic do not apply to
new records that happen to reuse the same offsets.

Invariants:

1. the DLQ topic is only read, never written: redrive and purge add markers, and
   ``read(include_done=True)`` still shows every dead letter;
2. a marker is written only after what it records was acknowledged by the broker (for a
   redrive: a PENDING result, then the re-enqueued task), so a crash in between leaves the dead
   letter "dead" and a later redrive enqueues it again: at-least-once, nothing lost;
3. redrive is idempotent: a dead letter marked redriven or purged is never enqueued again
   (two redrives of one queue running *at the same time* may both enqueue: run one at a time);
4. a redriven task keeps its id and key (same partition, same ``AsyncResult``) and starts again
   at attempt 1; only envelopes that decode, name a task the app has and whose arguments decode
   with its current signature are redriven — anything else would only be dead-lettered again;
5. reads go to the end of every partition (``enable.partition.eof``); watermarks are not trusted.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, Message, TopicPartition

from streamtasks import _kafka
from streamtasks.app import App
from streamtasks.codec import Codec, KnownSchema
from streamtasks.envelope import Envelope, ResultRecord, TaskStatus
from streamtasks.errors import BrokerError, ConfigError, DecodeError, StreamtasksError
from streamtasks.topics import (
    Headers,
    TopicSpec,
    dlq_state_topic,
    dlq_topic,
    results_topic,
    task_topic,
    validate_name,
)

__all__ = [
    "DeadLetter",
    "DeadLetterFilter",
    "DeadLetterNotFoundError",
    "DeadLetterQueue",
    "Origin",
    "RawRecord",
    "RedriveOutcome",
    "RedriveReport",
    "State",
    "StateMarker",
    "apply_markers",
    "dlq_state_topic",
    "format_age",
    "latest_markers",
    "redrive_headers",
    "reset_envelope",
    "truncate",
]

State = Literal["dead", "redriven", "purged"]
OutcomeKind = Literal[
    "redriven", "would-redrive", "already-done", "unredrivable", "over-limit", "failed"
]

_DONE_STATES: Final[frozenset[str]] = frozenset({"redriven", "purged"})
_MARKER_TS: Final = "st-dlq-timestamp"
_REF: Final = re.compile(r"^(\d+):(\d+)$")
_BATCH: Final = 500
RawHeaders = tuple[tuple[str, bytes | None], ...]


class DeadLetterNotFoundError(StreamtasksError, LookupError):
    """No dead letter has the given ref or task id."""


@dataclass(frozen=True)
class Origin:
    """Where the dead-lettered record was consumed from."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True)
class RawRecord:
    """One record as read from a topic: what :meth:`DeadLetter.parse` needs, nothing more."""

    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: RawHeaders = ()

    @classmethod
    def of(cls, msg: Message) -> RawRecord:
        partition, offset = msg.partition(), msg.offset()
        assert partition is not None and offset is not None  # a record, not an error event
        ts_type, ts = msg.timestamp()
        raw = msg.headers() or []
        pairs = raw.items() if isinstance(raw, dict) else raw
        return cls(
            partition=partition,
            offset=offset,
            timestamp_ms=ts if ts_type and ts >= 0 else None,
            key=msg.key(),
            value=msg.value(),
            headers=tuple((k, v.encode() if isinstance(v, str) else v) for k, v in pairs),
        )


@dataclass(frozen=True)
class DeadLetter:
    """A dead letter: the original record, why it died, and what has been done with it."""

    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    #: every header decoded as UTF-8 (bad bytes replaced); a repeated name: the last one wins
    headers: Mapping[str, str]
    raw_headers: RawHeaders
    task_id: str | None
    task: str | None
    reason: str
    error_type: str | None
    error_message: str | None
    traceback: str | None
    attempts: int | None
    first_failure_ms: int | None
    last_failure_ms: int | None
    origin: Origin | None
    worker_id: str | None
    envelope: Envelope | None
    #: why ``value`` is not a task envelope (``None`` when ``envelope`` is set)
    envelope_error: str | None
    state: State = "dead"

    @property
    def ref(self) -> str:
        return f"{self.partition}:{self.offset}"

    @property
    def error(self) -> str:
        """``"type: message"`` (what ``error_match`` is matched against)."""
        return f"{self.error_type or '?'}: {self.error_message or ''}"

    @property
    def failed_at_ms(self) -> int | None:
        return self.last_failure_ms if self.last_failure_ms is not None else self.timestamp_ms

    @classmethod
    def parse(cls, record: RawRecord, *, codec: Codec, envelope_schema: KnownSchema) -> DeadLetter:
        """Read a DLQ record; never raises (a value that does not decode is kept as bytes)."""
        headers = {
            k: "" if v is None else bytes(v).decode("utf-8", "replace") for k, v in record.headers
        }
        envelope: Envelope | None = None
        envelope_error: str | None = None
        try:
            _, rec = codec.decode(record.value, expect=envelope_schema)
            envelope = Envelope.from_avro(rec)
        except DecodeError as exc:
            dropped = headers.get("st-value-dropped")
            envelope_error = f"the value was dropped: {dropped}" if dropped else str(exc)
        origin_topic = headers.get("st-origin-topic")
        origin_partition = _int(headers.get("st-origin-partition"))
        origin_offset = _int(headers.get("st-origin-offset"))
        return cls(
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            key=record.key,
            value=record.value,
            headers=headers,
            raw_headers=record.headers,
            task_id=envelope.id if envelope else headers.get("st-id"),
            task=envelope.task if envelope else headers.get("st-task"),
            reason=headers.get("st-dlq-reason") or "unknown",
            error_type=headers.get("st-error-type"),
            error_message=headers.get("st-error-message"),
            traceback=headers.get("st-traceback"),
            attempts=_int(headers.get("st-attempts")),
            first_failure_ms=_int(headers.get("st-first-failure")),
            last_failure_ms=_int(headers.get("st-last-failure")),
            origin=(
                Origin(origin_topic, origin_partition, origin_offset)
                if origin_topic and origin_partition is not None and origin_offset is not None
                else None
            ),
            worker_id=headers.get("st-worker-id"),
            envelope=envelope,
            envelope_error=envelope_error,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable summary (the value as its size; the envelope without args)."""
        env = self.envelope
        return {
            "ref": self.ref,
            "state": self.state,
            "partition": self.partition,
            "offset": self.offset,
            "timestamp_ms": self.timestamp_ms,
            "key": None if self.key is None else self.key.decode("utf-8", "backslashreplace"),
            "task_id": self.task_id,
            "task": self.task,
            "reason": self.reason,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "attempts": self.attempts,
            "first_failure_ms": self.first_failure_ms,
            "last_failure_ms": self.last_failure_ms,
            "origin": None if self.origin is None else dataclasses.asdict(self.origin),
            "worker_id": self.worker_id,
            "value_bytes": None if self.value is None else len(self.value),
            "envelope": None
            if env is None
            else {
                k: v
                for k, v in env.to_avro().items()
                if k not in ("args", "continuation", "last_error")
            },
            "envelope_error": self.envelope_error,
            "headers": dict(self.headers),
            "traceback": self.traceback,
        }


def _int(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


# -- selection and state (pure) ---------------------------------------------------------------


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters an operation applies to; every given criterion must match.

    ``task``: exact task name; ``error_match``: a regular expression searched in
    ``"ErrorType: message"``; ``reason``: exact ``st-dlq-reason``.
    """

    task: str | None = None
    error_match: str | None = None
    reason: str | None = None
    _pattern: re.Pattern[str] | None = field(init=False, repr=False, compare=False, default=None)

    def __post_init__(self) -> None:
        if self.error_match is not None:
            try:
                object.__setattr__(self, "_pattern", re.compile(self.error_match))
            except re.error as exc:
                raise ConfigError(
                    f"error_match {self.error_match!r} is not a valid regular expression: {exc}"
                ) from None

    def matches(self, letter: DeadLetter) -> bool:
        if self.task is not None and letter.task != self.task:
            return False
        if self.reason is not None and letter.reason != self.reason:
            return False
        return self._pattern is None or self._pattern.search(letter.error) is not None


@dataclass(frozen=True)
class StateMarker:
    """What was done with the dead letter ``ref`` (``state="dead"``: a tombstone undid it)."""

    ref: str
    state: State
    timestamp_ms: int | None = None

    @classmethod
    def parse(cls, record: RawRecord) -> StateMarker | None:
        """A marker from a state-topic record; ``None`` for anything that is not one."""
        if record.key is None:
            return None
        ref = record.key.decode("utf-8", "replace")
        if not _REF.match(ref):
            return None
        if record.value is None:
            state: State = "dead"
        elif record.value == b"redriven":
            state = "redriven"
        elif record.value == b"purged":
            state = "purged"
        else:
            return None
        ts = next((v for k, v in reversed(record.headers) if k == _MARKER_TS), None)
        return cls(ref, state, _int(ts.decode("ascii", "replace")) if ts else None)


def latest_markers(markers: Iterable[StateMarker | None]) -> dict[str, StateMarker]:
    """The last marker per ref, in topic order (what compaction will eventually keep)."""
    latest: dict[str, StateMarker] = {}
    for marker in markers:
        if marker is not None:
            latest[marker.ref] = marker
    return latest


def apply_markers(
    letters: Iterable[DeadLetter], markers: Mapping[str, StateMarker]
) -> list[DeadLetter]:
    """Dead letters with their state joined from ``markers`` (stale markers are ignored)."""
    out = []
    for letter in letters:
        marker = markers.get(letter.ref)
        if marker is not None and (
            marker.timestamp_ms is None
            or letter.timestamp_ms is None
            or marker.timestamp_ms == letter.timestamp_ms
        ):
            letter = dataclasses.replace(letter, state=marker.state)
        out.append(letter)
    return out


# -- redrive (pure parts) ---------------------------------------------------------------------


def reset_envelope(env: Envelope) -> Envelope:
    """The envelope to enqueue again: same id, task, args; attempt 1, no eta, no last error."""
    return dataclasses.replace(env, attempt=1, eta=None, last_error=None)


def redrive_headers(letter: DeadLetter, env: Envelope, dlq: str) -> Headers:
    """The user's own headers (e.g. ``traceparent``) kept; every ``st-`` header made afresh."""
    kept: Headers = [(k, v) for k, v in letter.raw_headers if not k.startswith("st-")]
    return [
        ("st-task", env.task.encode()),
        ("st-id", env.id.encode()),
        ("st-attempt", str(env.attempt).encode()),
        ("st-redriven-from", f"{dlq}:{letter.partition}:{letter.offset}".encode()),
        *kept,
    ]


def unredrivable_reason(letter: DeadLetter, app: App) -> str | None:
    """Why redriving ``letter`` could only dead-letter it again; ``None`` if it can run."""
    env = letter.envelope
    if env is None:
        return f"not a task envelope ({letter.envelope_error})"
    task = app.tasks.get(env.task)
    if task is None:
        return f"task {env.task!r} is not registered in app {app.name!r}"
    try:
        task.decode_args(env.args)
    except StreamtasksError as exc:
        return f"arguments do not decode with the current signature of {env.task!r}: {exc}"
    return None


@dataclass(frozen=True)
class RedriveOutcome:
    ref: str
    task_id: str | None
    kind: OutcomeKind
    detail: str = ""


@dataclass(frozen=True)
class RedriveReport:
    """What a redrive did (or, with ``dry_run``, would do) with each selected dead letter."""

    outcomes: tuple[RedriveOutcome, ...]
    dry_run: bool = False

    def _count(self, *kinds: OutcomeKind) -> int:
        return sum(1 for o in self.outcomes if o.kind in kinds)

    @property
    def selected(self) -> int:
        return len(self.outcomes)

    @property
    def redriven(self) -> int:
        """Re-enqueued (with ``dry_run``: would be)."""
        return self._count("redriven", "would-redrive")

    @property
    def skipped_already_done(self) -> int:
        return self._count("already-done")

    @property
    def skipped_unredrivable(self) -> int:
        return self._count("unredrivable")

    @property
    def over_limit(self) -> int:
        """Redrivable, but left dead because ``limit`` was reached."""
        return self._count("over-limit")

    @property
    def failed(self) -> int:
        return self._count("failed")

    def summary(self) -> str:
        verb = "would redrive" if self.dry_run else "redriven"
        left = f", {self.over_limit} over the limit" if self.over_limit else ""
        return (
            f"{verb} {self.redriven} of {self.selected} selected; skipped "
            f"{self.skipped_already_done} already redriven/purged, "
            f"{self.skipped_unredrivable} not redrivable{left}; {self.failed} failed"
        )


# -- formatting -------------------------------------------------------------------------------


def format_age(then_ms: int | None, now_ms: int) -> str:
    """``"42s"``, ``"5m"``, ``"3h"``, ``"2d"`` — the largest whole unit; ``"-"`` if unknown."""
    if then_ms is None:
        return "-"
    seconds = max(0, now_ms - then_ms) // 1000
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def truncate(text: str, width: int) -> str:
    """``text`` on one line, cut to ``width`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: max(width - 1, 0)] + "…"


# -- the queue (I/O) --------------------------------------------------------------------------


class _Ack:
    """The broker's answer to one produced record (set by its delivery callback)."""

    __slots__ = ("error", "where")

    def __init__(self) -> None:
        self.error: str | None = "not acknowledged by the broker in time"
        self.where = ""

    def __call__(self, err: KafkaError | None, msg: Message) -> None:
        self.error = None if err is None else err.str()
        if err is None:
            self.where = f"{msg.topic()}:{msg.partition()}:{msg.offset()}"


@dataclass(frozen=True)
class _Out:
    topic: str
    value: bytes | None
    key: str | bytes | None
    headers: Headers


class DeadLetterQueue:
    """The dead letters of one queue of ``app``: ``DeadLetterQueue(app, "emails").read()``."""

    def __init__(self, app: App, queue: str | None = None, *, ack_timeout: float = 30.0) -> None:
        queue = queue or app.settings.default_queue
        problem = validate_name("queue", queue)
        if problem:
            raise ConfigError(problem)
        self.app = app
        self.queue = queue
        self.ack_timeout = ack_timeout
        ns = app.settings.namespace
        self.topic = dlq_topic(ns, queue)
        self.state_topic = dlq_state_topic(ns, queue)

    def __repr__(self) -> str:
        return f"<DeadLetterQueue {self.topic}>"

    # -- reading ------------------------------------------------------------------------------
    def read(self, *, include_done: bool = False, timeout: float = 10.0) -> list[DeadLetter]:
        """Every dead letter (oldest first); ``include_done``: also redriven and purged ones.

        ``timeout``: seconds without progress before giving up with :class:`BrokerError`.
        """
        records, marker_records = self._read_topics(timeout)
        letters = [
            DeadLetter.parse(r, codec=self.app.codec, envelope_schema=self.app.envelope_schema)
            for r in records
        ]
        joined = apply_markers(letters, latest_markers(map(StateMarker.parse, marker_records)))
        joined.sort(key=lambda d: (d.timestamp_ms or 0, d.partition, d.offset))
        return joined if include_done else [d for d in joined if d.state == "dead"]

    def select(
        self,
        *,
        task: str | None = None,
        error_match: str | None = None,
        reason: str | None = None,
        include_done: bool = False,
        timeout: float = 10.0,
    ) -> list[DeadLetter]:
        chosen = DeadLetterFilter(task, error_match, reason)
        return [
            d for d in self.read(include_done=include_done, timeout=timeout) if chosen.matches(d)
        ]

    def get(self, ref_or_task_id: str, *, timeout: float = 10.0) -> DeadLetter:
        """The dead letter with this ref (``"3:17"``) or task id (the newest, if several)."""
        letters = self.read(include_done=True, timeout=timeout)
        if _REF.match(ref_or_task_id):
            found = [d for d in letters if d.ref == ref_or_task_id]
        else:
            found = [d for d in letters if d.task_id == ref_or_task_id]
            found.sort(key=lambda d: (d.state == "dead", d.timestamp_ms or 0))
        if not found:
            raise DeadLetterNotFoundError(
                f"no dead letter {ref_or_task_id!r} in {self.topic} (give a ref "
                "'partition:offset' or a task id, as `streamtasks dlq list --all` shows them)"
            )
        return found[-1]

    def arguments(self, letter: DeadLetter) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """The decoded ``(args, kwargs)`` of a dead letter's task.

        :raises StreamtasksError: not an envelope, unknown task, or arguments that do not decode.
        """
        problem = unredrivable_reason(letter, self.app)
        if problem is not None or letter.envelope is None:
            raise StreamtasksError(f"cannot decode the arguments of {letter.ref}: {problem}")
        return self.app.tasks[letter.envelope.task].decode_args(letter.envelope.args)

    # -- acting -------------------------------------------------------------------------------
    def redrive(
        self,
        *,
        task: str | None = None,
        error_match: str | None = None,
        reason: str | None = None,
        limit: int | None = None,
        dry_run: bool = False,
        progress: Callable[[int, int], None] | None = None,
        timeout: float = 10.0,
    ) -> RedriveReport:
        """Enqueue the selected dead tasks again, at most ``limit`` of them, oldest first.

        Per dead letter, each step only after the broker acknowledged the previous one: a
        PENDING result (so waiting ``AsyncResult`` handles no longer see the old outcome), the
        task at attempt 1 on its queue's task topic, then the ``redriven`` marker.
        ``progress(done, total)`` is called as batches complete.
        """
        chosen = DeadLetterFilter(task, error_match, reason)
        selected = [d for d in self.read(include_done=True, timeout=timeout) if chosen.matches(d)]
        outcomes: dict[str, RedriveOutcome] = {}
        todo: list[DeadLetter] = []
        for d in selected:
            problem = unredrivable_reason(d, self.app)
            if d.state in _DONE_STATES:
                outcomes[d.ref] = RedriveOutcome(d.ref, d.task_id, "already-done", d.state)
            elif problem is not None:
                outcomes[d.ref] = RedriveOutcome(d.ref, d.task_id, "unredrivable", problem)
            elif limit is not None and len(todo) >= limit:
                outcomes[d.ref] = RedriveOutcome(d.ref, d.task_id, "over-limit")
            else:
                todo.append(d)
        if progress is not None:
            progress(0, len(todo))
        if dry_run:
            for d in todo:
                outcomes[d.ref] = RedriveOutcome(d.ref, d.task_id, "would-redrive")
        else:
            if todo:
                self._ensure_state_topic()
            for start in range(0, len(todo), _BATCH):
                outcomes.update(self._redrive_batch(todo[start : start + _BATCH]))
                if progress is not None:
                    progress(min(start + _BATCH, len(todo)), len(todo))
        order = {d.ref: i for i, d in enumerate(selected)}
        return RedriveReport(
            tuple(sorted(outcomes.values(), key=lambda o: order[o.ref])), dry_run=dry_run
        )

    def purge(
        self,
        *,
        task: str | None = None,
        error_match: str | None = None,
        reason: str | None = None,
        dry_run: bool = False,
        timeout: float = 10.0,
    ) -> int:
        """Hide the selected dead letters from :meth:`read` and redrive; returns how many."""
        letters = self.select(task=task, error_match=error_match, reason=reason, timeout=timeout)
        return len(letters) if dry_run else self.purge_letters(letters)

    def purge_letters(self, letters: Sequence[DeadLetter]) -> int:
        """Mark exactly these dead letters purged (e.g. the ones a user confirmed)."""
        dead = [d for d in letters if d.state == "dead"]
        if not dead:
            return 0
        self._ensure_state_topic()
        acks = self._produce_all([self._marker(d, "purged") for d in dead])
        failed = [(d.ref, a.error) for d, a in zip(dead, acks, strict=True) if a.error]
        if failed:
            raise BrokerError(
                f"{len(failed)} of {len(dead)} purge markers were not written "
                f"(they stay listed; run purge again): {failed[:3]}"
            )
        return len(dead)

    # -- internals ----------------------------------------------------------------------------
    def _redrive_batch(self, batch: Sequence[DeadLetter]) -> dict[str, RedriveOutcome]:
        outcomes: dict[str, RedriveOutcome] = {}

        def fail(d: DeadLetter, step: str, error: str | None) -> None:
            outcomes[d.ref] = RedriveOutcome(d.ref, d.task_id, "failed", f"{step}: {error}")

        envelopes = {d.ref: reset_envelope(d.envelope) for d in batch if d.envelope is not None}
        pending = [self._pending_result(envelopes[d.ref]) for d in batch]
        ok = []
        for d, ack in zip(batch, self._produce_all(pending), strict=True):
            if ack.error:
                fail(d, "PENDING result not written", ack.error)
            else:
                ok.append(d)
        tasks = [self._task_record(d, envelopes[d.ref]) for d in ok]
        sent = []
        for d, ack in zip(ok, self._produce_all(tasks), strict=True):
            if ack.error:
                fail(d, "task not enqueued", ack.error)
            else:
                sent.append((d, ack.where))
        markers = [self._marker(d, "redriven", to=where) for d, where in sent]
        for (d, where), ack in zip(sent, self._produce_all(markers), strict=True):
            if ack.error:
                # Enqueued, but still "dead": a later redrive would enqueue it once more.
                fail(d, f"enqueued at {where} but the redriven marker was not written", ack.error)
            else:
                outcomes[d.ref] = RedriveOutcome(d.ref, d.task_id, "redriven", f"to {where}")
        return outcomes

    def _pending_result(self, env: Envelope) -> _Out:
        record = ResultRecord(
            task_id=env.id,
            task=env.task,
            status=TaskStatus.PENDING,
            attempts=0,
            created_at=env.created_at,
        )
        value = self.app.codec.encode(self.app.result_schema, record.to_avro())
        headers: Headers = [("st-task", env.task.encode()), ("st-status", b"PENDING")]
        return _Out(results_topic(self.app.settings.namespace), value, env.id, headers)

    def _task_record(self, letter: DeadLetter, env: Envelope) -> _Out:
        value = self.app.codec.encode(self.app.envelope_schema, env.to_avro())
        return _Out(
            task_topic(self.app.settings.namespace, env.queue),
            value,
            letter.key if letter.key is not None else env.id,
            redrive_headers(letter, env, self.topic),
        )

    def _marker(self, letter: DeadLetter, state: State, *, to: str | None = None) -> _Out:
        headers: Headers = [(_MARKER_TS, str(letter.timestamp_ms or "").encode())]
        if letter.task_id is not None:
            headers.append(("st-id", letter.task_id.encode()))
        if to is not None:
            headers.append(("st-redriven-to", to.encode()))
        return _Out(self.state_topic, state.encode(), letter.ref, headers)

    def _produce_all(self, records: Sequence[_Out]) -> list[_Ack]:
        acks = [_Ack() for _ in records]
        for rec, ack in zip(records, acks, strict=True):
            self.app.produce(
                rec.topic, rec.value, key=rec.key, headers=rec.headers, on_delivery=ack
            )
        if records:
            self.app.flush(self.ack_timeout)
        return acks

    def _ensure_state_topic(self) -> None:
        settings = self.app.settings
        admin = _kafka.make_admin(settings.admin())
        _kafka.apply_topics(
            admin,
            [TopicSpec(self.state_topic, 1, {"cleanup.policy": "compact"})],
            replication_factor=settings.replication_factor,
        )

    def _read_topics(self, timeout: float) -> tuple[list[RawRecord], list[RawRecord]]:
        """All records of the DLQ topic and of its state topic (if it exists), to their ends."""
        cfg = self.app.settings.consumer(
            None, **{"enable.partition.eof": True, "fetch.wait.max.ms": 50}
        )
        consumer = _kafka.make_consumer(cfg)
        try:
            # All topics, not list_topics(name): asking for one by name may auto-create it.
            try:
                md = consumer.list_topics(timeout=timeout)
            except KafkaException as exc:
                raise BrokerError(
                    f"no Kafka broker answered at {self.app.settings.bootstrap_servers!r} "
                    f"within {timeout:g}s ({exc.args[0].str()}); check the address and that "
                    "the broker is running"
                ) from exc
            dlq = md.topics.get(self.topic)
            if dlq is None or dlq.error is not None or not dlq.partitions:
                raise BrokerError(
                    f"the dead-letter topic {self.topic!r} does not exist: check --queue, or run "
                    "`streamtasks topics apply <module:app>` (or start a worker) first"
                )
            wanted = [TopicPartition(self.topic, p, OFFSET_BEGINNING) for p in dlq.partitions]
            state = md.topics.get(self.state_topic)
            if state is not None and state.error is None:
                wanted += [
                    TopicPartition(self.state_topic, p, OFFSET_BEGINNING) for p in state.partitions
                ]
            consumer.assign(wanted)
            return self._consume_to_end(consumer, wanted, timeout)
        except KafkaException as exc:
            raise BrokerError(f"reading {self.topic!r} failed: {exc}") from exc
        finally:
            consumer.close()

    def _consume_to_end(
        self, consumer: Any, wanted: Sequence[TopicPartition], timeout: float
    ) -> tuple[list[RawRecord], list[RawRecord]]:
        pending = {(tp.topic, tp.partition) for tp in wanted}
        records: list[RawRecord] = []
        markers: list[RawRecord] = []
        last_progress = time.monotonic()
        while pending:
            msgs = consumer.consume(1000, 0.1)
            for msg in msgs:
                err = msg.error()
                if err is None:
                    target = records if msg.topic() == self.topic else markers
                    target.append(RawRecord.of(msg))
                elif err.code() == KafkaError._PARTITION_EOF:
                    pending.discard((msg.topic(), msg.partition()))
                elif err.fatal():
                    raise BrokerError(f"reading {self.topic!r} failed: {err.str()}")
            if msgs:
                last_progress = time.monotonic()
            elif time.monotonic() - last_progress > timeout:
                left = ", ".join(f"{t}[{p}]" for t, p in sorted(pending))
                raise BrokerError(
                    f"reading the dead letters made no progress for {timeout:g}s; "
                    f"not read to the end: {left}"
                )
        return records, markers
