"""Looking up results a listener forgot: one scan of the results topic serves every waiter.

A :class:`~streamtasks.listener.ResultListener` keeps at most ``result_capacity`` ids; a
handle evicted beyond that is *recalled* here, by reading the results topic again from where
the listener started.

* :class:`Harvest` (pure) decides, record by record, what a scan keeps: the latest record of
  every requested id and, once one of them was found, its *neighbours*: the ids of the records
  that follow it (timestamped at or after it, in the order the scan reads them), at most
  ``limit`` of them. Handles are usually awaited in send order and the results topic is
  roughly in that order, so the next evicted handle is most often one of them.
* :class:`Recaller` coalesces: every id waiting when a scan starts is served by it; an id asked
  for during a scan waits for the next one, unless a finished scan brought it back.
* :class:`Scan` runs one scan on its own reader and hands what it kept to the listener.

Invariants: a scan reads every partition from the listener's start to the end it has when the
scan reaches it, so what it keeps for an id is that id's latest record up to there (a redrive
or replay writes a newer one: it wins). Ids and records are handed to the listener in one
step (``handoff``), which from then on follows them; records between the scan's end and the
listener's position at the handoff are read afterwards (``settle``), so no newer record of a
recalled id is missed, whether it was final or not at the scan. Memory: at most
``limit`` + requested records held by a scan. A broker failure raises
:class:`~streamtasks.errors.BrokerError` to every waiter of that scan; never "no result".
"""

from __future__ import annotations

import ctypes
import functools
import heapq
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

import structlog

from streamtasks.errors import BrokerError
from streamtasks.kafka import Consumer, KafkaException, Message, clients, reader
from streamtasks.wire.envelope import ResultRecord

__all__ = [
    "Found",
    "Handoff",
    "Harvest",
    "Recaller",
    "Scan",
    "prefetch_limit",
    "release_freed_heap",
    "unreadable",
]

log = structlog.get_logger("streamtasks.results")

TP = tuple[str, int]
#: the last scans whose failure a waiter may still have to see
_ERRORS_KEPT = 16
#: records held undecoded until a requested id is found (see :class:`Harvest`); the scan
#: reads at most _CHUNK bytes of each partition at a time, so with records of ~250 bytes
#: this spans a few rounds over half a dozen partitions
RECENT = 8192
_CHUNK = 128 * 1024
#: what a scan's reader may fetch ahead (librdkafka's default is 64 MiB: a client near
#: its memory bound must not pay that on every look-up). Measured on Tansu, 300k records:
#: 0.7 s like this, 1.3 s with the defaults; 2.6 s with 8 MiB; ~11 s if queued.min.messages
#: is lowered to 10,000 as well.
_SCAN_READER = {
    "max.partition.fetch.bytes": _CHUNK,
    "queued.max.messages.kbytes": 16 * 1024,
}


def unreadable(topic: str, exc: KafkaException) -> BrokerError:
    """The error for a results topic the broker does not let us read."""
    return BrokerError(f"cannot read the results topic {topic!r}: {exc.args[0].str()}")


def prefetch_limit(capacity: int) -> int:
    """How many neighbours one scan brings back: a quarter of the listener's capacity, so a
    refill never pushes out more than that of what the listener holds, and a scan never
    holds more than that many records besides the requested ones."""
    return max(1, capacity // 4)


@dataclass(frozen=True, slots=True)
class Found:
    """The latest record a scan read for an id, and where it was."""

    partition: int
    offset: int
    record: ResultRecord


class Harvest:
    """What one scan keeps (pure: records reach it as key, value, position and timestamp).

    Neighbours are the ``limit`` earliest-stamped records at or after the first requested
    record found (ties: in the order read; in its own partition, only those after it). The
    partitions are read side by side, a chunk of each at a time, so some of them were read
    just *before* it: the last ``recent`` records read are held until a requested id is
    found, and looked at then. A later record of a kept id replaces its record, whatever its
    stamp. Records are kept undecoded; :meth:`finish` decodes the ones kept in the end.
    """

    def __init__(
        self,
        wanted: Iterable[str],
        limit: int,
        decode: Callable[[bytes, int, int], ResultRecord | None],
        *,
        recent: int = RECENT,
    ) -> None:
        self.wanted = frozenset(w.encode() for w in wanted)
        self.limit = limit
        self._decode = decode  # (value, partition, offset) -> record, None if undecodable
        #: id (key bytes) -> latest record (value, partition, offset) read so far
        self._kept: dict[bytes, tuple[bytes, int, int]] = {}
        #: id (key bytes) -> its latest record, decoded (by :meth:`finish`)
        self.found: dict[bytes, Found] = {}
        #: per partition, the offset after the last record read
        self.ends: dict[int, int] = {}
        self._since: int | None = None  # the timestamp neighbours are kept from
        #: the neighbours kept, the latest-stamped on top: (-timestamp, -order read, key)
        self._heap: list[tuple[int, int, bytes]] = []
        self._order = 0
        self._recent: deque[tuple[bytes, bytes, int, int, int]] | None = deque(maxlen=recent)

    def read(
        self, key: bytes | None, value: bytes | None, partition: int, offset: int, ts: int
    ) -> None:
        """One record, in offset order per partition (``value`` None: a tombstone)."""
        self.ends[partition] = offset + 1
        if key is None or value is None:
            return
        kept = self._kept
        if key in kept or key in self.wanted:
            first = key not in kept
            kept[key] = (value, partition, offset)
            if first and key in self.wanted:
                self._found_at(ts, partition)
        elif self._recent is not None:
            self._recent.append((key, value, partition, offset, ts))
        elif self._since is not None and ts >= self._since:
            self._neighbour(key, value, partition, offset, ts)

    def _found_at(self, ts: int, at: int) -> None:
        self._since = ts if self._since is None else min(self._since, ts)
        recent, self._recent = self._recent, None
        for key, value, partition, offset, rts in recent or ():
            if key in self._kept:  # a newer record of a neighbour held above
                self._kept[key] = (value, partition, offset)
            # before it in its own partition is before it, whatever the timestamps say
            elif rts >= ts and partition != at:
                self._neighbour(key, value, partition, offset, rts)

    def _neighbour(self, key: bytes, value: bytes, partition: int, offset: int, ts: int) -> None:
        self._order += 1
        entry = (-ts, -self._order, key)
        heap = self._heap
        if len(heap) >= self.limit and entry <= heap[0]:
            return  # not earlier than the latest-stamped neighbour kept
        self._kept[key] = (value, partition, offset)
        heapq.heappush(heap, entry)
        if len(heap) > self.limit:
            del self._kept[heapq.heappop(heap)[2]]

    def finish(self) -> dict[bytes, Found]:
        """Decode what was kept (an undecodable record is left out): :attr:`found`."""
        found: dict[bytes, Found] = {}
        for key, (value, partition, offset) in self._kept.items():
            rec = self._decode(value, partition, offset)
            if rec is not None:
                found[key] = Found(partition, offset, rec)
        self.found = found
        return found

    def missing(self) -> list[str]:
        """The requested ids the scan found no record of (not produced yet, or expired;
        after :meth:`finish`)."""
        return [w.decode() for w in self.wanted if w not in self.found]


@dataclass(frozen=True, slots=True)
class Handoff:
    """What the listener answers a finished scan: the ids it now follows on the scan's word
    (``owned``) and, per partition, the records it skipped before following them:
    ``[start, stop)`` (the scan's end up to the listener's position), to read once more."""

    owned: frozenset[str]
    gaps: Mapping[int, tuple[int, int]]


class Recaller:
    """Coalesces look-ups: one scan at a time; a scan serves every id pending when it starts.

    ``scan(ids)`` runs one scan (raising :class:`BrokerError` on a broker failure);
    ``known(id)`` tells whether the listener follows ``id`` again (a scan brought it back).
    """

    def __init__(self, scan: Callable[[set[str]], None], known: Callable[[str], bool]) -> None:
        self._scan = scan
        self._known = known
        self._cond = threading.Condition()
        self._pending: set[str] = set()
        self._running = False
        self._done = 0  # scans finished
        self._errors: dict[int, str] = {}
        #: look-ups asked for (handles not in memory) and scans run
        self.lookups = 0
        self.scans = 0

    def recall(self, task_id: str) -> None:
        """Return once a scan that started after this call has handed its findings over, or
        earlier if the listener follows ``task_id`` again; :class:`BrokerError` if that scan
        failed."""
        with self._cond:
            self.lookups += 1
            target = self._done + (2 if self._running else 1)
            self._pending.add(task_id)
            while self._done < target:
                if task_id in self._pending and self._known(task_id):
                    self._pending.discard(task_id)  # a finished scan brought it back
                    return
                if not self._running and self._pending:
                    self._lead()
                else:
                    self._cond.wait(1.0)
            error = self._errors.get(target)
        if error is not None:
            raise BrokerError(error)

    def _lead(self) -> None:
        """Run the next scan for every pending id (called holding the lock; released while
        the scan reads)."""
        ids, self._pending = self._pending, set()
        self._running = True
        number = self._done + 1
        self._cond.release()
        try:
            self._scan(ids)
        except BrokerError as exc:
            self._errors[number] = str(exc)
        except Exception as exc:  # a waiter must not hang on a scan that died
            log.exception("result look-up failed")
            self._errors[number] = f"result look-up failed: {exc!r}"
        finally:
            self._cond.acquire()
            self._running = False
            self._done = number
            self.scans += 1
            for old in [n for n in self._errors if n <= number - _ERRORS_KEPT]:
                del self._errors[old]
            self._cond.notify_all()


class Scan:
    """One scan: read, keep what a :class:`Harvest` wants, hand it over, read the gaps."""

    def __init__(
        self,
        *,
        topic: str,
        config: Mapping[str, object],
        decode: Callable[[bytes, int, int], ResultRecord | None],
        starts: Callable[[], Mapping[int, int]],
        handoff: Callable[[Harvest], Handoff],
        settle: Callable[[list[ResultRecord]], None],
        limit: int,
    ) -> None:
        self._topic = topic
        #: partitions are read a small chunk each at a time, side by side (see Harvest)
        self._config = {**config, **_SCAN_READER}
        self._decode = decode
        self._starts = starts
        self._handoff = handoff
        self._settle = settle
        self._limit = limit
        self._consumer: Consumer | None = None

    def close(self) -> None:
        """Close the reader (kept between scans: a new one per scan left each of its
        librdkafka threads' buffers behind as resident memory, ~20 MiB a scan at 1M)."""
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            consumer.close()

    def __call__(self, ids: set[str]) -> None:
        try:
            self._scan(ids)
        finally:
            # what the scan held (its neighbours, the reader's fetched records) is freed by
            # now, but the C heap keeps freed pages resident: hand them back
            release_freed_heap()

    def _scan(self, ids: set[str]) -> None:
        harvest = Harvest(ids, self._limit, self._decode)
        if self._consumer is None:
            self._consumer = clients.make_consumer(self._config)
        consumer = self._consumer
        try:
            starts = dict(self._starts())
            harvest.ends.update(starts)
            self._read(reader.read_range(consumer, self._tps(starts)), harvest)
            harvest.finish()
            handed = self._handoff(harvest)
            if handed.owned and handed.gaps:
                self._settle(self._gap_records(consumer, handed))
        except KafkaException as exc:
            self.close()
            raise unreadable(self._topic, exc) from exc
        except BaseException:
            self.close()  # a reader in an unknown state is not used again
            raise

    def _tps(self, offsets: Mapping[int, int]) -> dict[TP, int]:
        return {(self._topic, p): o for p, o in offsets.items()}

    def _read(self, msgs: Iterator[Message], harvest: Harvest) -> None:
        read = harvest.read  # once per record of the topic: no more calls than needed
        for msg in msgs:
            read(
                msg.key(),
                msg.value(),
                msg.partition() or 0,
                msg.offset() or 0,
                msg.timestamp()[1],
            )

    def _gap_records(self, consumer: Consumer, handed: Handoff) -> list[ResultRecord]:
        """The records of owned ids in the gaps, in offset order per partition."""
        owned = {tid.encode() for tid in handed.owned}
        stops = {p: stop for p, (_start, stop) in handed.gaps.items()}
        starts = {p: start for p, (start, _stop) in handed.gaps.items()}
        out: list[ResultRecord] = []
        msgs = reader.read_range(
            consumer,
            self._tps(starts),
            stop=lambda m: int(m.offset() or 0) >= stops[int(m.partition() or 0)],
        )
        for msg in msgs:
            value = msg.value()
            if msg.key() in owned and value is not None:
                rec = self._decode(value, int(msg.partition() or 0), int(msg.offset() or 0))
                if rec is not None:
                    out.append(rec)
        return out


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        # the process's own symbols, libc's among them (no library search, no subprocess)
        trim: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to do
        return None
    return trim


def release_freed_heap() -> None:
    """Return the C heap's free pages to the OS (glibc's ``malloc_trim``; elsewhere nothing).

    A scan allocates tens of MiB in librdkafka's threads (fetched records) and in Python (the
    records it keeps); freed, they stay resident in glibc's per-thread arenas, and each scan
    of a 1M-record topic left the client ~20 MiB bigger (bench/README.md). Measured with
    ``bench/recall.py --n 1000000 --lookups 5``: +97 MiB after the look-ups without, +22 with.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
