"""The result listener: one background reader of ``{ns}.results`` per process that wakes the
:class:`~streamtasks.asyncresult.AsyncResult` handles waiting on it.

Invariants: a process has at most two result consumers (one for tasks it sent, reading from
the results topic's end as it was *before* its first send, so no result of its own can be
missed; one reading from the beginning, only for handles on tasks sent elsewhere), however
many handles wait; listeners use ``assign()``, never join a group, never commit. The one for
sent tasks keeps at most ``result_capacity`` ids; a forgotten one is looked up again by a
scan of the topic (:mod:`streamtasks.recall`), whose findings it then follows.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import structlog

from streamtasks.errors import BrokerError, DecodeError
from streamtasks.kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
    clients,
    reader,
)
from streamtasks.recall import Handoff, Harvest, Recaller, Scan, prefetch_limit, unreadable
from streamtasks.wire.envelope import ResultRecord
from streamtasks.wire.topics import results_topic

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["ResultListener"]

log = structlog.get_logger("streamtasks.results")

#: partitions whose read positions a timeout's message names
_DESCRIBED_PARTITIONS = 12

#: answers about a topic created a moment ago, before its partitions have leaders
_NO_LEADER_YET = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


class ResultListener:
    """Reads ``{ns}.results`` in a background thread and wakes the handles waiting on it."""

    def __init__(self, app: App, *, from_beginning: bool) -> None:
        self._app = app
        self._topic = results_topic(app.settings.namespace)
        self._from_beginning = from_beginning
        self._cond = threading.Condition()
        self._latest: OrderedDict[str, ResultRecord] = OrderedDict()
        self._expected: OrderedDict[str, None] = OrderedDict()
        #: ids (pending) plus final records kept at most; older ones are looked up on demand
        self._capacity = app.settings.result_capacity
        #: per partition, the offset after the last record the reading thread looked at
        self._positions: dict[int, int] = {}
        #: ids a finished scan handed over whose records in its gaps are still to be read
        self._owned: set[str] = set()
        scan = Scan(
            topic=self._topic,
            config=self._reader_config(),
            decode=self._decode,
            starts=self._scan_starts,
            handoff=self._handoff,
            settle=self._settle,
            limit=prefetch_limit(self._capacity),
        )
        self._scan = scan
        self._recaller = Recaller(scan, self._follows)
        self._start: list[TopicPartition] | None = None
        self._start_at_beginning = False
        self._thread: threading.Thread | None = None
        self._closed = threading.Event()
        self._caught_up = threading.Event()
        self._error: str | None = None

    # -- registration (before producing) ---------------------------------------------------
    def expect(self, task_id: str) -> None:
        """Remember that this process sent ``task_id``; call before producing it."""
        with self._cond:
            if self._start is None and not self._start_at_beginning:
                try:
                    self._start = self._snapshot_start()
                except BrokerError as exc:
                    # Sending must not fail because results cannot be read yet (e.g. the
                    # results topic does not exist): read them from the beginning later.
                    log.warning("results will be read from the beginning", reason=str(exc))
                    self._start_at_beginning = True
            self._expected[task_id] = None
            if len(self._expected) > self._capacity:
                self._expected.popitem(last=False)

    def expect_many(self, task_ids: list[str]) -> None:
        """:meth:`expect` for a batch, under one lock."""
        if not task_ids:
            return
        self.expect(task_ids[0])
        with self._cond:
            expected = self._expected
            for task_id in task_ids[1:]:
                expected[task_id] = None
            while len(expected) > self._capacity:
                expected.popitem(last=False)

    def connect(self, timeout: float = 10.0) -> None:
        """Find where to read from and start reading now (:meth:`App.connect`); raises
        :class:`BrokerError` when the results topic cannot be read within ``timeout`` (a
        retriable answer, e.g. a just-created topic without a leader yet, is retried)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._start is None:
                try:
                    self._start = self._snapshot_start()
                except BrokerError as exc:
                    cause = exc.__cause__
                    retriable = (
                        isinstance(cause, KafkaException) and cause.args[0].code() in _NO_LEADER_YET
                    )
                    if not retriable or time.monotonic() >= deadline:
                        raise
                    self._cond.wait(0.1)
        self._ensure_started()

    def _snapshot_start(self, *, beginning: bool = False) -> list[TopicPartition]:
        consumer = clients.make_consumer(self._reader_config())
        try:
            partitions = self._partitions(consumer)
            if beginning or self._from_beginning or partitions is None:
                return [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in partitions or []]
            start = []
            for p in partitions:
                _lo, hi = consumer.get_watermark_offsets(
                    TopicPartition(self._topic, p), timeout=10.0
                )
                start.append(TopicPartition(self._topic, p, max(hi, 0)))
            return start
        except KafkaException as exc:
            raise unreadable(self._topic, exc) from exc
        finally:
            consumer.close()

    def _partitions(self, consumer: Any) -> list[int] | None:
        return reader.require_partitions(
            consumer,
            self._topic,
            f"the results topic {self._topic!r} does not exist: run "
            "`streamtasks topics apply <module:app>` (or start a worker) first",
        )

    def _reader_config(self) -> dict[str, Any]:
        return self._app.settings.consumer(None, **{"enable.partition.eof": True})

    # -- reading -------------------------------------------------------------------------
    def _ensure_started(self) -> None:
        with self._cond:
            if self._thread is not None:
                return
            if self._start is None:
                self._start = self._snapshot_start(beginning=self._start_at_beginning)
            self._thread = threading.Thread(
                target=self._run, name=f"streamtasks-results-{self._topic}", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        consumer = clients.make_consumer(self._reader_config())
        assert self._start is not None
        consumer.assign(self._start)
        pending_eof = {tp.partition for tp in self._start}
        try:
            while not self._closed.is_set():
                # consume(n, t) waits out all of t unless n records are ready; poll() wakes
                # on the first one
                msgs = consumer.consume(1000, 0)
                if not msgs:
                    one = consumer.poll(0.1)
                    msgs = [one] if one is not None else []
                if msgs:
                    with self._cond:  # ids handed over by a scan: see _handoff
                        msgs = self._select(msgs, pending_eof)
                    updates = self._results_in(msgs)
                    if updates:
                        self._store(updates)
        except Exception as exc:  # keep waiters from hanging forever on a dead thread
            self._error = f"result listener stopped: {exc!r}"
            log.exception("result listener crashed")
            with self._cond:
                self._cond.notify_all()
        finally:
            consumer.close()

    def _select(self, msgs: list[Message], pending_eof: set[int]) -> list[Message]:
        """The records among ``msgs`` to decode (partition ends and positions noted; called
        holding the lock, so a scan's handoff sees positions and ids consistently)."""
        keep: list[Message] = []
        positions, expected = self._positions, self._expected
        for msg in msgs:
            err = msg.error()
            if err is not None:
                if reader.is_partition_eof(err):
                    pending_eof.discard(msg.partition())
                    if not pending_eof:
                        self._caught_up.set()
                else:
                    log.warning("results topic read error", error=err.str())
                continue
            partition, offset = msg.partition(), msg.offset()
            if partition is not None and offset is not None:
                positions[partition] = offset + 1
            if msg.value() is None:  # tombstone of an expired result
                continue
            if not self._from_beginning:
                key = msg.key()
                if key is None or key.decode(errors="replace") not in expected:
                    continue  # another client's task: skip the decoding
            keep.append(msg)
        return keep

    def _decode(
        self, value: bytes | None, partition: int | None, offset: int | None
    ) -> ResultRecord | None:
        """The result record in ``value``; None (logged) if it is not one."""
        try:
            _, raw = self._app.codec.decode(value, expect=self._app.result_schema)
        except DecodeError as exc:
            log.warning(
                "undecodable record on results topic",
                error=str(exc),
                partition=partition,
                offset=offset,
            )
            return None
        return ResultRecord.from_avro(raw)

    def _results_in(self, msgs: list[Message]) -> list[ResultRecord]:
        """The result records among ``msgs`` (undecodable ones logged and skipped)."""
        decoded = (self._decode(m.value(), m.partition(), m.offset()) for m in msgs)
        return [rec for rec in decoded if rec is not None]

    def _store(self, updates: list[ResultRecord]) -> None:
        with self._cond:
            owned = self._owned
            for rec in updates:
                if self._from_beginning or rec.task_id in self._expected:
                    self._latest[rec.task_id] = rec
                    self._latest.move_to_end(rec.task_id)
                    if owned:
                        owned.discard(rec.task_id)  # newer than anything in a scan's gap
            self._trim()
            self._cond.notify_all()

    def _trim(self) -> None:
        """Keep at most ``result_capacity`` records (called holding the lock)."""
        while len(self._latest) > self._capacity and not self._from_beginning:
            # forgotten entirely, so a handle waiting on it looks it up instead of hanging
            evicted, _ = self._latest.popitem(last=False)
            self._expected.pop(evicted, None)

    # -- queries -------------------------------------------------------------------------
    def peek(self, task_id: str) -> ResultRecord | None:
        self._ensure_started()
        with self._cond:
            rec = self._latest.get(task_id)
            if rec is not None or self._from_beginning or task_id in self._expected:
                return rec
        return self._recall(task_id)

    def _recall(self, task_id: str) -> ResultRecord | None:
        """The latest record of a task this process sent but no longer remembers (evicted
        beyond ``result_capacity``), looked up by a scan of the topic that also brings back
        its neighbours (:mod:`streamtasks.recall`); from then on the listener follows it."""
        self._ensure_started()
        self._recaller.recall(task_id)
        with self._cond:
            return self._latest.get(task_id)

    @property
    def lookups(self) -> int:
        """How many handles asked for a look-up (not in memory when asked)."""
        return self._recaller.lookups

    @property
    def scans(self) -> int:
        """How many scans of the results topic served those look-ups."""
        return self._recaller.scans

    def _follows(self, task_id: str) -> bool:
        with self._cond:
            return task_id in self._latest or task_id in self._expected

    def _scan_starts(self) -> dict[int, int]:
        assert self._start is not None  # set by _ensure_started() before any look-up
        return {tp.partition: tp.offset for tp in self._start}

    def _handoff(self, harvest: Harvest) -> Handoff:
        """Take over what a scan found: ids the listener does not follow now are followed from
        here on, with the scan's latest record; the records the listener skipped between the
        scan's end and its own position are the gaps the scan reads next (:meth:`_settle`)."""
        with self._cond:
            owned: set[str] = set()
            for found in harvest.found.values():
                rec = found.record
                if rec.task_id not in self._expected and rec.task_id not in self._latest:
                    self._latest[rec.task_id] = rec
                    owned.add(rec.task_id)
            for task_id in harvest.missing():
                if task_id not in self._latest:
                    owned.add(task_id)
            for task_id in owned:
                self._expected[task_id] = None
            while len(self._expected) > self._capacity:
                self._expected.popitem(last=False)
            self._trim()
            self._owned = owned
            gaps = {
                p: (harvest.ends.get(p, pos), pos)
                for p, pos in self._positions.items()
                if pos > harvest.ends.get(p, pos)
            }
            self._cond.notify_all()
        return Handoff(frozenset(owned), gaps)

    def _settle(self, records: list[ResultRecord]) -> None:
        """Records from a scan's gaps, for ids no record of the listener's has superseded."""
        with self._cond:
            for rec in records:
                if rec.task_id in self._owned and rec.task_id in self._expected:
                    self._latest[rec.task_id] = rec
            self._owned = set()
            self._cond.notify_all()

    def wait(self, task_id: str, timeout: float | None) -> ResultRecord | None:
        """Block until ``task_id`` has a final result; ``None`` on timeout."""
        self._ensure_started()
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._from_beginning:
            # Reading history: a final state seen early may be superseded later in the topic
            # (e.g. DEAD, then redriven: PENDING, SUCCESS). Read to the end first.
            self._caught_up.wait(timeout)
        while True:
            rec, forgotten = self._wait_known(task_id, deadline)
            if not forgotten:
                return rec
            # evicted beyond result_capacity (before or while waiting): look it up
            rec = self._recall(task_id)
            if rec is not None and rec.status.is_final:
                return rec

    def _wait_known(self, task_id: str, deadline: float | None) -> tuple[ResultRecord | None, bool]:
        """Wait while this listener remembers ``task_id``: ``(final record or None on
        timeout, False)``, or ``(None, True)`` once it does not remember it."""
        with self._cond:
            while True:
                rec = self._latest.get(task_id)
                if rec is not None and rec.status.is_final:
                    return rec, False
                if self._error is not None:
                    raise BrokerError(self._error)
                if rec is None and not self._from_beginning and task_id not in self._expected:
                    return None, True
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None, False
                self._cond.wait(remaining if remaining is not None else 1.0)

    def describe(self, task_id: str) -> str:
        """Why a wait on ``task_id`` may not have ended, for a timeout's message: the last
        state read for it and how far this listener has read the results topic."""
        with self._cond:
            rec = self._latest.get(task_id)
            followed = rec is not None or self._from_beginning or task_id in self._expected
            positions = sorted(self._positions.items())
            starts = {} if self._start is None else {tp.partition: tp.offset for tp in self._start}
        if rec is not None:
            state = f"last state read: {rec.status.value} (attempt {rec.attempts})"
        elif followed:
            state = "no record of it read yet"
        else:
            state = "not remembered by this process (looked up on demand)"
        if self._error is not None:
            return f"{state}; {self._error}"
        at_end = "read to its end" if self._caught_up.is_set() else "not yet read to its end"
        shown = ", ".join(
            f"{p}: {starts.get(p, '?')}..{pos}" for p, pos in positions[:_DESCRIBED_PARTITIONS]
        )
        more = "" if len(positions) <= _DESCRIBED_PARTITIONS else ", ..."
        read = f"offsets read per partition: {shown or 'none'}{more}"
        return f"{state}; {self._topic} {at_end} ({read})"

    def wait_caught_up(self, timeout: float) -> bool:
        """True once every partition was read to its end at least once."""
        self._ensure_started()
        return self._caught_up.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._scan.close()
