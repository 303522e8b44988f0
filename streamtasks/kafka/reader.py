"""Reading topics as a tool does (no consumer group): partitions, heads, ranges, time lookups.

The operations commands (replay, status, offsets reset) read Kafka only through this module.

* :func:`partitions_of` — the partitions of a topic (``[]`` when it does not exist);
  :func:`require_partitions` — the same, raising :class:`BrokerError` when it does not;
* :func:`is_partition_eof` — whether a consumed record is the "end of partition" event (the
  one place ``KafkaError._PARTITION_EOF`` is named);
* :func:`read_to_end` — every record of some topics, from their beginnings to their ends;
* :func:`heads` — per partition, the first record at or after an offset and the end offset;
* :func:`read_range` — every record from given offsets up to the end each partition had when
  the read reached it (or until a ``stop`` predicate says so);
* :func:`tail` — the records from given offsets on, waiting for new ones until told to stop;
* :func:`offset_for_time` — the first offset whose record is timestamped at or after a time
  (the search itself, :func:`search_time`, is pure and unit-tested); :func:`starts_since` —
  that offset for every partition of some topics, where a read "since a time" starts;
* :class:`TopicTail` — follow a topic from given positions, for a reader that keeps reading
  (an index, the result store's sync, the scheduler's state): batches of records as they
  come, and which partitions have not reached their end yet.

Invariants: what is returned is what the records say, never what a watermark or a time index
claims. End offsets come from the fetch responses of the records read (the broker's cached high
watermark after a fetch), so a stale ``ListOffsets`` answer cannot shorten a read, and
``offsets_for_times`` is only a hint that is verified against the records' own timestamps and
replaced by a bounded binary search when wrong. Every wait is bounded; a read that makes no
progress for ``timeout`` seconds raises :class:`BrokerError`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from streamtasks.errors import BrokerError
from streamtasks.kafka import clients

if TYPE_CHECKING:
    from confluent_kafka import Message

    from streamtasks.app import App

__all__ = [
    "BEGINNING",
    "DEFAULT_FETCH_WAIT_MS",
    "Head",
    "TopicTail",
    "fetch_wait_ms",
    "heads",
    "is_partition_eof",
    "offset_for_time",
    "open_reader",
    "partitions_of",
    "read_range",
    "read_to_end",
    "record_ts",
    "require_partitions",
    "search_time",
    "starts_since",
    "tail",
]

TP = tuple[str, int]
#: a start offset meaning "the partition's earliest record"
BEGINNING = OFFSET_BEGINNING
#: librdkafka's ``fetch.wait.max.ms`` when the config does not set it
DEFAULT_FETCH_WAIT_MS: Final = 500
#: binary-search probes at most (2**64 offsets): the fallback of :func:`offset_for_time`
_MAX_PROBES = 64


def fetch_wait_ms(cfg: Mapping[str, Any]) -> float:
    """The ``fetch.wait.max.ms`` a consumer made from ``cfg`` uses (librdkafka's default
    when unset): how long the broker may hold a fetch of partitions with nothing new."""
    return float(str(cfg.get("fetch.wait.max.ms", DEFAULT_FETCH_WAIT_MS)))


def open_reader(app: App, *, min_fetch_wait_ms: int | None = None) -> Consumer:
    """An assign()-only consumer that reports partition ends; close it when done.

    ``min_fetch_wait_ms`` raises the configured fetch wait to at least that (for a tail of a
    rarely written topic: an idle fetch costs the broker a request each wait)."""
    cfg = app.settings.consumer(None, **{"enable.partition.eof": True})
    if min_fetch_wait_ms is not None and fetch_wait_ms(cfg) < min_fetch_wait_ms:
        cfg["fetch.wait.max.ms"] = min_fetch_wait_ms
    return clients.make_consumer(cfg)


def record_ts(msg: Message) -> int:
    """The record's timestamp (epoch ms; CreateTime or LogAppendTime), -1 if it has none."""
    _kind, ts = msg.timestamp()
    return int(ts)


def partitions_of(consumer: Consumer, topic: str, *, timeout: float = 10.0) -> list[int]:
    """The topic's partitions, sorted; ``[]`` when the topic does not exist."""
    try:
        md = consumer.list_topics(timeout=timeout)  # all topics: by name may auto-create it
    except KafkaException as exc:
        raise BrokerError(f"no broker answered within {timeout:g}s: {exc.args[0].str()}") from exc
    meta = md.topics.get(topic)
    if meta is None or meta.error is not None:
        return []
    return sorted(meta.partitions)


def require_partitions(
    consumer: Consumer, topic: str, missing: str, *, timeout: float = 10.0
) -> list[int]:
    """The topic's partitions, sorted; :class:`BrokerError` (``missing``) when it has none."""
    parts = partitions_of(consumer, topic, timeout=timeout)
    if not parts:
        raise BrokerError(missing)
    return parts


def is_partition_eof(err: KafkaError | None) -> bool:
    """True for the "reached the end of the partition" event (``enable.partition.eof``)."""
    return err is not None and err.code() == KafkaError._PARTITION_EOF


def read_to_end(app: App, topics: Iterable[str], *, timeout: float = 30.0) -> Iterator[Message]:
    """Every record of ``topics`` (those that exist), from each partition's beginning to the end
    it had when the read reached it; an own reader, closed when the iteration ends."""
    consumer = open_reader(app)
    try:
        starts = {
            (topic, p): BEGINNING
            for topic in topics
            for p in partitions_of(consumer, topic, timeout=timeout)
        }
        yield from read_range(consumer, starts, timeout=timeout)
    finally:
        consumer.close()


@dataclass(frozen=True, slots=True)
class Head:
    """A partition seen from ``start``: its first record there (None at the end) and its end."""

    start: int  # the offset asked for (OFFSET_BEGINNING resolved to the first record's)
    first: Message | None
    end: int

    @property
    def first_offset(self) -> int:
        """Where reading from ``start`` really begins (the first record, or the end)."""
        if self.first is None:
            return self.end
        offset = self.first.offset()
        assert offset is not None
        return offset


def heads(consumer: Consumer, starts: Mapping[TP, int], *, timeout: float = 10.0) -> dict[TP, Head]:
    """Per partition: the first record at or after its start offset, and the end offset.

    A start of :data:`OFFSET_BEGINNING` means the partition's earliest record.
    """
    if not starts:
        return {}
    _assign(consumer, starts)
    found: dict[TP, Message | None] = {}
    eof_at: dict[TP, int] = {}
    last = time.monotonic()
    try:
        while len(found) < len(starts):
            msgs = consumer.consume(500, 0.05)
            for msg in msgs:
                tp = (str(msg.topic()), int(msg.partition() or 0))
                if tp in found or tp not in starts:
                    continue
                err = msg.error()
                if err is None:
                    offset = msg.offset()
                    if offset is not None and (starts[tp] < 0 or offset >= starts[tp]):
                        found[tp] = msg
                        consumer.pause([TopicPartition(tp[0], tp[1])])
                elif is_partition_eof(err):
                    found[tp] = None
                    eof_at[tp] = int(msg.offset() or 0)
                else:
                    _raise_if_fatal(err, tp)
            if msgs:
                last = time.monotonic()
            elif time.monotonic() - last > timeout:
                raise BrokerError(f"no answer for {_fmt(set(starts) - set(found))} in {timeout:g}s")
        return {
            tp: _head(consumer, tp, starts[tp], first, eof_at.get(tp))
            for tp, first in found.items()
        }
    finally:
        consumer.unassign()


def _head(consumer: Consumer, tp: TP, start: int, first: Message | None, eof: int | None) -> Head:
    end = _cached_end(consumer, tp, eof)
    if first is not None:
        end = max(end, int(first.offset() or 0) + 1)
    if start < 0:
        start = int(first.offset() or 0) if first is not None else end
    return Head(start, first, end)


def record_at(
    consumer: Consumer, topic: str, partition: int, offset: int, *, timeout: float = 10.0
) -> Message | None:
    """The first record at or after ``offset``; None at the partition's end."""
    return heads(consumer, {(topic, partition): offset}, timeout=timeout)[(topic, partition)].first


def read_range(
    consumer: Consumer,
    starts: Mapping[TP, int],
    *,
    stop: Callable[[Message], bool] | None = None,
    timeout: float = 30.0,
) -> Iterator[Message]:
    """The records from ``starts`` (per partition, in offset order) to the partition's end.

    A partition is done at its first end-of-partition (records produced after that are not
    read) or at the first record for which ``stop`` is true (that record is not yielded).
    """
    pending = set(starts)
    if not pending:
        return
    _assign(consumer, starts)
    last = time.monotonic()
    try:
        while pending:
            msgs = consumer.consume(1000, 0.05)
            for msg in msgs:
                tp = (str(msg.topic()), int(msg.partition() or 0))
                if tp not in pending:
                    continue
                err = msg.error()
                if err is not None:
                    if is_partition_eof(err):
                        _done(consumer, pending, tp)
                    else:
                        _raise_if_fatal(err, tp)
                    continue
                if stop is not None and stop(msg):
                    _done(consumer, pending, tp)
                    continue
                yield msg
            if msgs:
                last = time.monotonic()
            elif time.monotonic() - last > timeout:
                raise BrokerError(f"reading {_fmt(pending)} made no progress for {timeout:g}s")
    finally:
        consumer.unassign()


class TopicTail:
    """One topic followed from given positions on a consumer that reports partition ends.

    :meth:`start` assigns the partitions (also from a group's ``on_assign`` callback);
    :meth:`take` returns the records that are ready, waiting up to ``timeout`` only when
    there are none. A partition's end-of-partition event marks it caught up (its later
    records are still returned); :attr:`caught_up` is true once every started partition was.
    Errors other than the end of a partition go to ``on_error`` (ignored without one).
    """

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        *,
        on_error: Callable[[KafkaError], None] | None = None,
        batch: int = 1000,
    ) -> None:
        self._consumer = consumer
        self.topic = topic
        self._on_error = on_error
        self._batch = batch
        self._behind: set[int] = set()

    def start(self, starts: Mapping[int, int]) -> None:
        """Assign the partitions at their start offsets (:data:`BEGINNING` for the earliest);
        every one of them is behind until its end is reached."""
        _assign(self._consumer, {(self.topic, p): o for p, o in starts.items()})
        self._behind = set(starts)

    @property
    def behind(self) -> list[int]:
        """The started partitions whose end has not been reached yet, sorted."""
        return sorted(self._behind)

    @property
    def caught_up(self) -> bool:
        return not self._behind

    def take(self, timeout: float) -> list[Message]:
        """The records ready now; if none, waits up to ``timeout`` seconds for one."""
        # consume(n, t) waits out all of t unless n records are ready: take what is there
        # without waiting, and block only in poll(), which wakes on one record.
        msgs = self._consumer.consume(self._batch, 0)
        if not msgs:
            one = self._consumer.poll(timeout)
            msgs = [one] if one is not None else []
        records: list[Message] = []
        for msg in msgs:
            err = msg.error()
            if err is None:
                records.append(msg)
            elif is_partition_eof(err):
                self._behind.discard(int(msg.partition() or 0))
            elif self._on_error is not None:
                self._on_error(err)
        return records


def tail(
    consumer: Consumer, starts: Mapping[TP, int], *, stop: Callable[[], bool], wait: float = 0.2
) -> Iterator[Message]:
    """The records of one topic from ``starts`` (per partition, in offset order) and every later
    one, as they arrive, until ``stop()`` is true (checked at least every ``wait`` seconds): a
    :class:`TopicTail` as a generator; a fatal error raises :class:`BrokerError`."""
    if not starts:
        return
    topics = {t for t, _ in starts}
    if len(topics) != 1:
        raise ValueError(f"tail() follows one topic, got {sorted(topics)}")
    topic = topics.pop()
    follow = TopicTail(consumer, topic, on_error=lambda err: _raise_if_fatal(err, (topic, -1)))
    follow.start({p: o for (_, p), o in starts.items()})
    try:
        while not stop():
            yield from follow.take(wait)
    finally:
        consumer.unassign()


def starts_since(
    consumer: Consumer, topics: Iterable[str], since_ms: int | None, *, timeout: float = 10.0
) -> dict[TP, int]:
    """Where to start reading each partition of ``topics`` for the records stamped at or
    after ``since_ms`` (:func:`offset_for_time`; None: the beginning). A topic that does not
    exist has no partitions here."""
    return {
        (topic, p): BEGINNING
        if since_ms is None
        else offset_for_time(consumer, topic, p, since_ms, timeout=timeout)
        for topic in topics
        for p in partitions_of(consumer, topic, timeout=timeout)
    }


#: ``probe(offset)``: (offset, timestamp) of the first record at or after ``offset``, None at
#: the end
Probe = Callable[[int], tuple[int, int] | None]


def offset_for_time(
    consumer: Consumer, topic: str, partition: int, ts_ms: int, *, timeout: float = 10.0
) -> int:
    """The first offset of ``topic[partition]`` whose record is timestamped >= ``ts_ms`` (the
    end offset when there is none), found by :func:`search_time` on the partition's records
    with the broker's ``offsets_for_times`` answer as a hint to verify."""
    head = heads(consumer, {(topic, partition): OFFSET_BEGINNING}, timeout=timeout)[
        (topic, partition)
    ]
    if head.first is None:
        return head.end

    def probe(offset: int) -> tuple[int, int] | None:
        rec = record_at(consumer, topic, partition, offset, timeout=timeout)
        return None if rec is None else (int(rec.offset() or offset), record_ts(rec))

    hint = _broker_hint(consumer, topic, partition, ts_ms, timeout)
    return search_time(ts_ms, head.first_offset, head.end, record_ts(head.first), hint, probe)


def search_time(ts_ms: int, low: int, end: int, low_ts: int, hint: int | None, probe: Probe) -> int:
    """The first offset in ``[low, end]`` whose record is stamped >= ``ts_ms`` (pure: records
    are reached only through ``probe``; ``low_ts`` is the timestamp of the record at ``low``).

    ``hint`` (the broker's time index answer) is accepted only if the records around it confirm
    it: the one just before is older than ``ts_ms`` and the one at it is not. Otherwise a binary
    search over the records, at most ~64 probes. Both assume timestamps do not decrease along
    the partition (LogAppendTime, or CreateTime from producers with synchronised clocks);
    callers that must be exact still filter each record by its own timestamp, so a start a
    little early costs only reading time.
    """
    if low_ts >= ts_ms:
        return low
    if hint is not None and low < hint <= end and _confirms(probe, hint, ts_ms, end):
        return hint
    lo, hi = low + 1, end  # the record at `low` is older than ts_ms (checked above)
    for _ in range(_MAX_PROBES):
        if lo >= hi:
            break
        mid = (lo + hi) // 2
        found = probe(mid)
        if found is None:
            hi = mid  # nothing at or after mid (a stale end): the answer is at most mid
        elif found[1] < ts_ms:
            lo = found[0] + 1
        else:
            hi = mid  # no record between mid and found[0]: the answer is at most mid
    return lo


def _confirms(probe: Probe, offset: int, ts_ms: int, end: int) -> bool:
    before = probe(offset - 1)
    if before is None or before[0] != offset - 1 or before[1] >= ts_ms:
        return False
    if offset >= end:
        return True
    at = probe(offset)
    return at is None or at[1] >= ts_ms


def _broker_hint(
    consumer: Consumer, topic: str, partition: int, ts_ms: int, timeout: float
) -> int | None:
    try:
        got = consumer.offsets_for_times([TopicPartition(topic, partition, ts_ms)], timeout=timeout)
    except KafkaException:
        return None
    if not got or got[0].error is not None or got[0].offset < 0:
        return None
    return int(got[0].offset)


def _cached_end(consumer: Consumer, tp: TP, eof_at: int | None) -> int:
    """The high watermark the last fetch response carried (not a fresh ListOffsets)."""
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(tp[0], tp[1]), cached=True)
    except KafkaException:
        high = -1
    return max(int(high), eof_at if eof_at is not None else -1, 0)


def _assign(consumer: Consumer, starts: Mapping[TP, int]) -> None:
    parts = [TopicPartition(t, p, o) for (t, p), o in starts.items()]
    consumer.assign(parts)
    consumer.resume(parts)  # a partition paused by an earlier read stays paused otherwise


def _done(consumer: Consumer, pending: set[TP], tp: TP) -> None:
    pending.discard(tp)
    consumer.pause([TopicPartition(tp[0], tp[1])])


def _raise_if_fatal(err: KafkaError, tp: TP) -> None:
    if err.fatal() or err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
        raise BrokerError(f"reading {tp[0]}[{tp[1]}] failed: {err.str()}")


def _fmt(tps: set[TP] | Mapping[TP, object]) -> str:
    return ", ".join(f"{t}[{p}]" for t, p in sorted(tps))
