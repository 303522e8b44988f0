"""The chord join: collect the outcomes of a chord's members, then send its callback once.

Every member of a chord ends with one extra output: a ``ChordMemberOutcome`` record on
``{ns}.chords``, keyed by the chord id, so that all outcomes of one chord land in one
partition. The worker that owns the partition runs a :class:`ChordJoiner` on its poll thread:

* outcomes are kept in memory per chord until all ``size`` members succeeded (then the callback
  is sent with their results in member order) or one of them did not (then the chord's result —
  the body's last step — is written as a FAILURE with a ``ChordError``, and the chord's error
  callbacks are sent);
* the offsets of a chord's records are finished only once those outputs, and then the chord's
  *marker* (a final result under ``wf.{chord}.chord``), are acknowledged; the partition's
  commit never passes an incomplete chord, so after a crash the next owner reads its records
  again and rebuilds the same state — the join state is the topic itself;
* a chord whose marker exists is complete: its records (a member re-run after a crash, a
  joiner that died before committing) are finished without output. Should the callback be
  produced twice anyway (a crash between it and the marker), both copies carry the same
  deterministic id and run to completion once (see :class:`streamtasks.worker.indexes.FiredIndex`).

Invariants: :meth:`ChordJoiner.add` never raises for a record's content (an unreadable record
is logged and skipped); every record it accepted is eventually finished, by a completion.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import structlog

from streamtasks.errors import StreamtasksError
from streamtasks.wire.envelope import Envelope, ErrorInfo, TaskStatus
from streamtasks.wire.headers import TRACEPARENT, header
from streamtasks.wire.ids import chord_marker_id, step_id
from streamtasks.wire.records import ChordJoin, ChordMember
from streamtasks.worker.continuation import Continuation
from streamtasks.worker.outcomes import Output, Record, Results, carry_traceparent
from streamtasks.worker.tracker import OffsetTracker

__all__ = ["ChordJoiner", "Completion"]

log = structlog.get_logger("streamtasks.chords")

TP = tuple[str, int]
_MAX_COMPLETED = 100_000


@dataclass(frozen=True, slots=True)
class Completion:
    """Offsets of ``tp`` that finish once ``outputs``, then ``then``, are acknowledged."""

    tp: TP
    offsets: tuple[int, ...]
    outputs: tuple[Output, ...] = ()
    then: tuple[Output, ...] = ()
    chord_id: str = ""


@dataclass(slots=True)
class _Pending:
    join: ChordJoin
    members: dict[int, ChordMember] = field(default_factory=dict)
    offsets: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Partition:
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    chords: dict[str, _Pending] = field(default_factory=dict)


class ChordJoiner:
    """Joins chord member outcomes for the ``{ns}.chords`` partitions this worker owns."""

    def __init__(self, results: Results, continuation: Continuation) -> None:
        self._results = results
        self._continuation = continuation
        self._app = results.app
        self._parts: dict[TP, _Partition] = {}
        self._completed: OrderedDict[str, None] = OrderedDict()

    # -- partitions -------------------------------------------------------------------------
    def assigned(self, tp: TP) -> None:
        self._parts[tp] = _Partition()

    def forget(self, tp: TP) -> None:
        """Revoked or lost: drop its state (the next owner rebuilds it from the topic)."""
        self._parts.pop(tp, None)

    def tracker(self, tp: TP) -> OffsetTracker | None:
        part = self._parts.get(tp)
        return part.tracker if part is not None else None

    def pending(self) -> int:
        """Chords waiting for members, over all owned partitions."""
        return sum(len(p.chords) for p in self._parts.values())

    def finished(self, tp: TP, offsets: tuple[int, ...]) -> bool:
        """A completion was acknowledged; True if the committable position may have moved."""
        part = self._parts.get(tp)
        if part is None:
            return False
        moved = False
        for offset in offsets:
            moved = part.tracker.finish(offset) or moved
        return moved

    # -- records ----------------------------------------------------------------------------
    def add(self, rec: Record) -> Completion | None:
        """Take one record; returns what to produce when that completes a chord (or a
        completion without outputs for a record with nothing to wait for)."""
        tp = (rec.topic, rec.partition)
        part = self._parts.get(tp)
        if part is None or not part.tracker.add(rec.offset):
            return None  # not ours, or a re-delivery already held
        alone = Completion(tp, (rec.offset,))
        app = self._app
        try:
            _, raw_member = app.codec.decode(rec.value, expect=app.chord_member_schema)
            member = ChordMember.from_avro(raw_member)
            _, raw_join = app.codec.decode(member.join, expect=app.chord_join_schema)
            join = ChordJoin.from_avro(raw_join)
        except StreamtasksError as exc:
            log.error("unreadable chord record skipped", error=str(exc), **rec.log_fields())
            return alone
        chord_id, index, size = join.chord_id, join.index, join.size
        if not 0 <= index < size:
            log.error("chord record with a bad member index skipped", chord_id=chord_id)
            return alone
        if chord_id in self._completed:
            return alone  # a late copy of a member's outcome
        pending = part.chords.get(chord_id)
        if pending is None:
            if self._marker_written(chord_id):
                self._remember(chord_id)
                log.info("chord already complete; record skipped", chord_id=chord_id)
                return alone
            pending = part.chords[chord_id] = _Pending(join)
        pending.offsets.append(rec.offset)
        pending.members.setdefault(index, member)  # the first outcome of a member counts
        failed = (index, member) if member.status != TaskStatus.SUCCESS.value else None
        if failed is None and len(pending.members) < size:
            return None
        del part.chords[chord_id]
        self._remember(chord_id)
        outputs, status = self._complete(chord_id, pending, failed)
        trace = header(rec.headers, TRACEPARENT)  # the last member's: the callback continues it
        if trace is not None:
            outputs = tuple(carry_traceparent(o, trace) for o in outputs)
        marker = Envelope(
            id=chord_marker_id(chord_id), task="streamtasks.chord", queue="", args=b""
        )
        then = self._results.result_output(marker, status, None, None, None)
        return Completion(tp, tuple(pending.offsets), outputs, (then,), chord_id)

    def _marker_written(self, chord_id: str) -> bool:
        """Has this chord's marker been written (by anyone, ever)?"""
        return self._results.fired_index().done(chord_marker_id(chord_id))

    def _remember(self, chord_id: str) -> None:
        self._completed[chord_id] = None
        if len(self._completed) > _MAX_COMPLETED:
            self._completed.popitem(last=False)

    def _complete(
        self, chord_id: str, pending: _Pending, failed: tuple[int, ChordMember] | None
    ) -> tuple[tuple[Output, ...], TaskStatus]:
        join = pending.join
        if failed is None:
            try:
                callback = self._callback(chord_id, pending)
            except (StreamtasksError, ValueError, TypeError, KeyError) as exc:
                error = ErrorInfo(
                    "ChordError", f"chord {chord_id}: cannot send its callback: {exc}"
                )
            else:
                log.info("chord complete; callback sent", chord_id=chord_id, size=join.size)
                return (callback,), TaskStatus.SUCCESS
        else:
            index, member = failed
            cause = member.error or ErrorInfo("Error", "")
            error = ErrorInfo(
                "ChordError",
                f"chord {chord_id}: member {index} ({member.member_id}, task "
                f"{member.task}) ended {member.status}: {cause.type}: {cause.message}",
                cause.traceback,
            )
        log.warning("chord failed", chord_id=chord_id, error=error.message)
        last_id = step_id(chord_id, len(join.rest))
        last_task = self._task_name(join.rest[-1] if join.rest else join.body)
        last = Envelope(id=last_id, task=last_task, queue="", args=b"", root_id=chord_id)
        outputs = (
            self._results.result_output(last, TaskStatus.FAILURE, None, None, error),
            *self._continuation.errback_outputs(
                join.link_error, last_id, last_task, 1, chord_id, TaskStatus.FAILURE, error
            ),
        )
        return outputs, TaskStatus.FAILURE

    def _callback(self, chord_id: str, pending: _Pending) -> Output:
        app, join = self._app, pending.join
        values = []
        for index in range(join.size):
            member = pending.members[index]
            task = app.tasks.get(member.task)
            if task is None:
                raise KeyError(f"member task {member.task!r} is not registered here")
            if member.value is None:
                raise ValueError(f"member {index} succeeded without a result value")
            values.append(task.decode_result(member.value))
        task, partial = self._continuation.decode_step(join.body)
        args = app.codec.encode(task.args_schema, task.signature.complete(partial, values))
        env = Envelope(
            id=step_id(chord_id, 0),
            task=task.name,
            queue=task.queue,
            args=args,
            root_id=chord_id,
            workflow_id=chord_id,
            continuation=join.rest,
            link_error=join.link_error,
        )
        return self._continuation.task_output(env)

    def _task_name(self, frame: bytes) -> str:
        try:
            _, sig = self._app.codec.decode(frame, expect=self._app.signature_schema)
        except StreamtasksError:
            return "unknown"
        return str(sig["task"])
