"""Dead-letter tooling: read, inspect, redrive and purge one queue's dead-letter topic.

:class:`DeadLetterQueue` is the broker I/O; what a dead letter is, which ones a filter selects
and how state markers join onto them is decided in :mod:`streamtasks.ops.deadletters` (its names
are re-exported here). Kafka cannot delete single records, so what was done with a dead letter
is recorded beside it, in the compacted topic ``{ns}.tasks.{queue}.dlq.state``
(:func:`dlq_state_topic`): one marker per dead letter, keyed by its ref.

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

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Final

from streamtasks.app import App
from streamtasks.errors import BrokerError, ConfigError, StreamtasksError
from streamtasks.kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
    clients,
    reader,
)
from streamtasks.ops.deadletters import (
    DONE_STATES,
    MARKER_TIMESTAMP_HEADER,
    DeadLetter,
    DeadLetterFilter,
    Origin,
    RawRecord,
    RedriveOutcome,
    RedriveReport,
    State,
    StateMarker,
    apply_markers,
    format_age,
    is_ref,
    latest_markers,
    redrive_headers,
    reset_envelope,
    truncate,
    unredrivable_reason,
)
from streamtasks.wire import headers as hdr
from streamtasks.wire.envelope import Envelope, ResultRecord, TaskStatus
from streamtasks.wire.topics import (
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

_BATCH: Final = 500


class DeadLetterNotFoundError(StreamtasksError, LookupError):
    """No dead letter has the given ref or task id."""


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
        if is_ref(ref_or_task_id):
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
        refs: Collection[str] | None = None,
    ) -> RedriveReport:
        """Enqueue the selected dead tasks again, at most ``limit`` of them, oldest first.

        Per dead letter, each step only after the broker acknowledged the previous one: a
        PENDING result (so waiting ``AsyncResult`` handles no longer see the old outcome), the
        task at attempt 1 on its queue's task topic, then the ``redriven`` marker.
        ``progress(done, total)`` is called as batches complete; ``refs``: only these dead
        letters (``"partition:offset"``, as :attr:`DeadLetter.ref`), e.g. the one a user picked.
        """
        chosen = DeadLetterFilter(task, error_match, reason)
        selected = [
            d
            for d in self.read(include_done=True, timeout=timeout)
            if chosen.matches(d) and (refs is None or d.ref in refs)
        ]
        outcomes: dict[str, RedriveOutcome] = {}
        todo: list[DeadLetter] = []
        for d in selected:
            problem = unredrivable_reason(d, self.app)
            if d.state in DONE_STATES:
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
        headers: Headers = [(hdr.TASK, env.task.encode()), (hdr.STATUS, b"PENDING")]
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
        headers: Headers = [(MARKER_TIMESTAMP_HEADER, str(letter.timestamp_ms or "").encode())]
        if letter.task_id is not None:
            headers.append((hdr.ID, letter.task_id.encode()))
        if to is not None:
            headers.append((hdr.REDRIVEN_TO, to.encode()))
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
        admin = clients.make_admin(settings.admin())
        clients.apply_topics(
            admin,
            [TopicSpec(self.state_topic, 1, {"cleanup.policy": "compact"})],
            replication_factor=settings.replication_factor,
        )

    def _read_topics(self, timeout: float) -> tuple[list[RawRecord], list[RawRecord]]:
        """All records of the DLQ topic and of its state topic (if it exists), to their ends."""
        cfg = self.app.settings.consumer(
            None, **{"enable.partition.eof": True, "fetch.wait.max.ms": 50}
        )
        consumer = clients.make_consumer(cfg)
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
            return self._consume_to_end(consumer, wanted, timeout)
        except KafkaException as exc:
            raise BrokerError(f"reading {self.topic!r} failed: {exc}") from exc
        finally:
            consumer.close()

    def _consume_to_end(
        self, consumer: Any, wanted: Sequence[TopicPartition], timeout: float
    ) -> tuple[list[RawRecord], list[RawRecord]]:
        records: list[RawRecord] = []
        markers: list[RawRecord] = []
        starts = {(tp.topic, tp.partition): tp.offset for tp in wanted}
        try:
            for msg in reader.read_range(consumer, starts, timeout=timeout):
                target = records if msg.topic() == self.topic else markers
                target.append(RawRecord.of(msg))
        except BrokerError as exc:
            raise BrokerError(f"reading the dead letters failed: {exc}") from exc
        return records, markers
