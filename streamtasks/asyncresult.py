"""Awaiting results: :class:`AsyncResult` handles served by one listener per process.

Invariants: a process has at most two result consumers (one for tasks it sent, reading from
the results topic's end as it was *before* its first send, so no result of its own can be
missed; one reading from the beginning, only for handles on tasks sent elsewhere), however
many handles wait; listeners use ``assign()``, never join a group, never commit.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

import structlog

from streamtasks.errors import (
    BrokerError,
    DecodeError,
    DeliveryError,
    ResultTimeoutError,
    StreamtasksError,
    TaskFailedError,
)
from streamtasks.kafka import (
    OFFSET_BEGINNING,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
    clients,
    reader,
)
from streamtasks.kafka.delivery import Delivery
from streamtasks.wire.envelope import ResultRecord, TaskStatus
from streamtasks.wire.topics import results_topic

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.task import Task

__all__ = ["AsyncResult", "Delivery", "ResultListener"]

log = structlog.get_logger("streamtasks.results")

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
        #: how many handles were resolved by reading the topic again (evicted from memory)
        self.lookups = 0
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
            raise BrokerError(
                f"cannot read the results topic {self._topic!r}: {exc.args[0].str()}"
            ) from exc
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
                updates = self._results_in(msgs, pending_eof)
                if updates:
                    self._store(updates)
        except Exception as exc:  # keep waiters from hanging forever on a dead thread
            self._error = f"result listener stopped: {exc!r}"
            log.exception("result listener crashed")
            with self._cond:
                self._cond.notify_all()
        finally:
            consumer.close()

    def _results_in(self, msgs: list[Message], pending_eof: set[int]) -> list[ResultRecord]:
        """The result records among ``msgs`` this listener keeps (partition ends noted)."""
        codec, schema = self._app.codec, self._app.result_schema
        updates: list[ResultRecord] = []
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
            if msg.value() is None:  # tombstone of an expired result
                continue
            if not self._from_beginning:
                key = msg.key()
                if key is None or key.decode(errors="replace") not in self._expected:
                    continue  # another client's task: skip the decoding
            try:
                _, raw = codec.decode(msg.value(), expect=schema)
            except DecodeError as exc:
                log.warning(
                    "undecodable record on results topic",
                    error=str(exc),
                    partition=msg.partition(),
                    offset=msg.offset(),
                )
                continue
            updates.append(ResultRecord.from_avro(raw))
        return updates

    def _store(self, updates: list[ResultRecord]) -> None:
        with self._cond:
            for rec in updates:
                if self._from_beginning or rec.task_id in self._expected:
                    self._latest[rec.task_id] = rec
                    self._latest.move_to_end(rec.task_id)
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
        beyond ``result_capacity``): expected again first, so a result that arrives from now
        on is caught by the listener, then looked up in what the topic holds already."""
        self.expect(task_id)
        assert self._start is not None  # set by expect()
        starts = {(tp.topic, tp.partition): tp.offset for tp in self._start}
        key = task_id.encode()
        codec, schema = self._app.codec, self._app.result_schema
        found: ResultRecord | None = None
        consumer = clients.make_consumer(self._reader_config())
        try:
            for msg in reader.read_range(consumer, starts):
                if msg.key() == key and msg.value() is not None:
                    try:
                        found = ResultRecord.from_avro(codec.decode(msg.value(), expect=schema)[1])
                    except DecodeError:
                        continue
        except KafkaException as exc:
            raise BrokerError(f"cannot read the results topic {self._topic!r}: {exc}") from exc
        finally:
            consumer.close()
        with self._cond:
            self.lookups += 1
            latest = self._latest.get(task_id)
            if latest is not None:  # the listener saw a newer one meanwhile
                return latest
            if found is not None:
                self._latest[task_id] = found
                self._trim()
            return found

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

    def wait_caught_up(self, timeout: float) -> bool:
        """True once every partition was read to its end at least once."""
        self._ensure_started()
        return self._caught_up.wait(timeout)

    def close(self) -> None:
        self._closed.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)


class AsyncResult:
    """A handle on a task's outcome: ``.status``, ``.ready()``, ``.get(timeout=...)``."""

    # a process may hold a million of these (send_many): no per-instance dict
    __slots__ = ("_delivery", "_final", "app", "id", "task")

    def __init__(
        self,
        task_id: str,
        *,
        app: App,
        task: Task[Any, Any] | None = None,
        delivery: Delivery | None = None,
    ) -> None:
        self.id = task_id
        self.app = app
        self.task = task
        self._delivery = delivery
        self._final: ResultRecord | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def _listener(self) -> ResultListener:
        return self.app.results_listener(history=self._delivery is None)

    def wait_delivery(self, timeout: float | None = None) -> None:
        """Wait until the broker acknowledged the task event. Raises :class:`DeliveryError`
        if it was NOT enqueued (unreachable broker, refused, timed out — librdkafka's
        ``message.timeout.ms``), :class:`ResultTimeoutError` if not acknowledged yet after
        ``timeout`` seconds (default: until delivered or failed)."""
        d = self._delivery
        if d is None:
            return
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.1)
        while not d.done:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                break
            self.app.producer.poll(min(left, 1.0))
        if not d.done:
            raise ResultTimeoutError(f"task {self.id} was not acknowledged by the broker yet")
        if d.error is not None:
            self.app.failure_reported(f"task {self.id}")
            raise DeliveryError(
                f"task {self.id} was NOT enqueued: the broker did not acknowledge it "
                f"({d.error}); bootstrap servers {self.app.settings.bootstrap_servers}",
                (self.id,),
            )

    wait_sent = wait_delivery

    def record(self) -> ResultRecord | None:
        """The latest state seen for this task (``None`` if nothing yet)."""
        if self._final is not None:
            return self._final
        rec = self._listener().peek(self.id)
        if rec is not None and rec.status.is_final:
            self._final = rec
        return rec

    @property
    def status(self) -> TaskStatus:
        rec = self.record()
        return TaskStatus.PENDING if rec is None else rec.status

    def revoke(self) -> None:
        """Make sure no worker starts this task (it ends REVOKED); see :meth:`App.revoke`."""
        self.app.revoke(self.id)

    @property
    def info(self) -> Any:
        """The value on SUCCESS, the :class:`ErrorInfo` on failure, else None (Celery's)."""
        rec = self.record()
        if rec is None:
            return None
        if rec.status is TaskStatus.SUCCESS:
            return self._decode_value(rec)
        return rec.error

    def ready(self) -> bool:
        return self.status.is_final

    def get(self, timeout: float | None = None, *, propagate: bool = True) -> Any:
        """Wait for the task to finish and return its value.

        Raises :class:`TaskFailedError` (with the remote error type, message and traceback)
        if it failed and ``propagate`` is true, :class:`ResultTimeoutError` after ``timeout``.
        """
        start = time.monotonic()
        self.wait_sent(timeout)
        rec = self._final
        if rec is None:
            left = None if timeout is None else max(0.0, timeout - (time.monotonic() - start))
            rec = self._listener().wait(self.id, left)
            if rec is None:
                raise ResultTimeoutError(f"task {self.id} did not finish within {timeout}s")
            self._final = rec
        if rec.status is TaskStatus.SUCCESS:
            return self._decode_value(rec)
        error = rec.error
        if not propagate:
            return error
        if error is None:
            raise TaskFailedError(self.id, rec.status.value, f"task ended {rec.status.value}")
        raise TaskFailedError(self.id, error.type, error.message, error.traceback)

    def _decode_value(self, rec: ResultRecord) -> Any:
        if rec.value is None:
            return None
        task = self.task or self.app.tasks.get(rec.task)
        if task is None:
            raise StreamtasksError(
                f"cannot decode the result of task {rec.task!r}: it is not registered in app "
                f"{self.app.name!r}"
            )
        return task.decode_result(rec.value)
