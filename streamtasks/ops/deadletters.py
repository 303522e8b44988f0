"""Dead letters as data: what a DLQ record says, which ones a filter picks, what was done to them.

The worker writes a dead letter as the consumed record's original key, bytes and headers plus
``st-dlq-reason``, ``st-error-*``, ``st-attempts``, ``st-*-failure`` and ``st-origin-*`` headers
(:meth:`DeadLetter.parse` reads them). What was done with a dead letter is a :class:`StateMarker`
keyed by its ref ``"<partition>:<offset>"``, value ``redriven`` or ``purged`` (a tombstone means
"dead" again), carrying the dead letter's timestamp in ``st-dlq-timestamp``.
:class:`streamtasks.ops.dlq.DeadLetterQueue` reads and writes the topics; this module only decides.

Invariants:

1. no I/O: everything here works on records already read (:class:`RawRecord`);
2. parsing never raises: a value that does not decode is kept as bytes with the reason why, and
   a state-topic record that is not a marker is ignored;
3. a marker applies to a dead letter only if either timestamp is unknown or both are equal, so
   markers left from a deleted and recreated DLQ topic do not apply to new records that happen
   to reuse the same offsets;
4. a redriven envelope keeps its id, task and arguments and starts again at attempt 1; every
   ``st-`` header is made afresh, the user's own headers are kept.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from streamtasks.app import App
from streamtasks.errors import ConfigError, DecodeError, StreamtasksError
from streamtasks.kafka import Message
from streamtasks.wire import headers as hdr
from streamtasks.wire.codec import Codec, KnownSchema
from streamtasks.wire.envelope import Envelope
from streamtasks.wire.topics import Headers

__all__ = [
    "DONE_STATES",
    "MARKER_TIMESTAMP_HEADER",
    "DeadLetter",
    "DeadLetterFilter",
    "Origin",
    "RawRecord",
    "RedriveOutcome",
    "RedriveReport",
    "State",
    "StateMarker",
    "apply_markers",
    "format_age",
    "is_ref",
    "latest_markers",
    "redrive_headers",
    "reset_envelope",
    "truncate",
    "unredrivable_reason",
]

State = Literal["dead", "redriven", "purged"]
OutcomeKind = Literal[
    "redriven", "would-redrive", "already-done", "unredrivable", "over-limit", "failed"
]

#: the states in which a dead letter is done with: never redriven or purged again
DONE_STATES: Final[frozenset[str]] = frozenset({"redriven", "purged"})
#: the marker header that holds the marked dead letter's timestamp (ms)
MARKER_TIMESTAMP_HEADER: Final = hdr.DLQ_TIMESTAMP
_REF: Final = re.compile(r"^(\d+):(\d+)$")
RawHeaders = tuple[tuple[str, bytes | None], ...]


def is_ref(text: str) -> bool:
    """Whether ``text`` is a dead letter's ref, ``"<partition>:<offset>"``."""
    return _REF.match(text) is not None


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
        dlh = hdr.DeadLetterHeaders.parse(headers)
        envelope: Envelope | None = None
        envelope_error: str | None = None
        try:
            _, rec = codec.decode(record.value, expect=envelope_schema)
            envelope = Envelope.from_avro(rec)
        except DecodeError as exc:
            dropped = dlh.value_dropped
            envelope_error = f"the value was dropped: {dropped}" if dropped else str(exc)
        origin_topic, origin_partition, origin_offset = (
            dlh.origin_topic,
            dlh.origin_partition,
            dlh.origin_offset,
        )
        return cls(
            partition=record.partition,
            offset=record.offset,
            timestamp_ms=record.timestamp_ms,
            key=record.key,
            value=record.value,
            headers=headers,
            raw_headers=record.headers,
            task_id=envelope.id if envelope else dlh.task_id,
            task=envelope.task if envelope else dlh.task,
            reason=dlh.reason,
            error_type=dlh.error_type,
            error_message=dlh.error_message,
            traceback=dlh.traceback,
            attempts=dlh.attempts,
            first_failure_ms=dlh.first_failure_ms,
            last_failure_ms=dlh.last_failure_ms,
            origin=(
                Origin(origin_topic, origin_partition, origin_offset)
                if origin_topic and origin_partition is not None and origin_offset is not None
                else None
            ),
            worker_id=dlh.worker_id,
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
        if not is_ref(ref):
            return None
        if record.value is None:
            state: State = "dead"
        elif record.value == b"redriven":
            state = "redriven"
        elif record.value == b"purged":
            state = "purged"
        else:
            return None
        ts = next((v for k, v in reversed(record.headers) if k == MARKER_TIMESTAMP_HEADER), None)
        return cls(ref, state, hdr.parse_int(ts.decode("ascii", "replace")) if ts else None)


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
    kept: Headers = [(k, v) for k, v in letter.raw_headers if not hdr.is_own(k)]
    return [
        *hdr.task_headers(env),
        (hdr.REDRIVEN_FROM, f"{dlq}:{letter.partition}:{letter.offset}".encode()),
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
