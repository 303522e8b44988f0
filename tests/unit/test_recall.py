"""The pure parts of looking up forgotten results: what a scan keeps, and how look-ups that
wait at the same time share one scan."""

from __future__ import annotations

import threading

import pytest

from streamtasks import App
from streamtasks.errors import BrokerError
from streamtasks.recall import Harvest, Recaller, prefetch_limit
from streamtasks.wire.envelope import ResultRecord, TaskStatus


def rec(task_id: str, status: TaskStatus = TaskStatus.SUCCESS) -> ResultRecord:
    return ResultRecord(task_id=task_id, task="t", status=status, attempts=1, created_at=0)


RECORDS: dict[bytes, ResultRecord] = {}


def decode(value: bytes, partition: int, offset: int) -> ResultRecord | None:
    return RECORDS.get(value)


def harvest(wanted: list[str], limit: int, recent: int = 100) -> Harvest:
    return Harvest(wanted, limit, decode, recent=recent)


def feed(h: Harvest, records: list[tuple[str, int, int, ResultRecord]]) -> None:
    """Offer ``(key, partition, offset, record)`` in read order, as a scan does; the
    timestamp is the offset, so it rises along each partition."""
    for key, partition, offset, r in records:
        value = f"{r.task_id}:{r.status.value}:{offset}".encode()
        RECORDS[value] = r
        h.read(key.encode(), value, partition, offset, offset)
    h.finish()


def test_a_scan_keeps_the_requested_id_and_the_neighbours_after_it_up_to_the_limit() -> None:
    # Given a scan for "c" that may bring back 2 neighbours
    h = harvest(["c"], limit=2)
    # When it reads a..f (timestamps rising with the offsets)
    feed(h, [(k, 0, i, rec(k)) for i, k in enumerate("abcdef")])
    # Then it kept c and the two records after it, not those before or beyond the limit
    assert list(h.found) == [b"c", b"d", b"e"]
    assert h.ends == {0: 6}
    assert h.missing() == []


def test_the_latest_record_of_a_kept_id_wins_also_beyond_the_limit() -> None:
    # Given a scan for "a" with one neighbour; "b" is PENDING first, later SUCCESS, and "a"
    # is redriven (a newer record) after the limit was reached
    h = harvest(["a"], limit=1)
    feed(
        h,
        [
            ("a", 0, 0, rec("a", TaskStatus.DEAD)),
            ("b", 1, 1, rec("b", TaskStatus.PENDING)),
            ("c", 0, 2, rec("c")),
            ("b", 1, 3, rec("b")),
            ("a", 0, 4, rec("a")),
        ],
    )
    # Then both kept ids carry their latest record and "c" was not kept
    assert {k: f.record.status for k, f in h.found.items()} == {
        b"a": TaskStatus.SUCCESS,
        b"b": TaskStatus.SUCCESS,
    }
    assert h.found[b"a"].offset == 4
    assert h.ends == {0: 5, 1: 4}


def test_neighbours_read_just_before_the_requested_id_in_other_partitions_are_kept() -> None:
    # Given a scan for "x" (partition 1, timestamp 5) that read partition 0 a chunk ahead
    h = harvest(["x", "never"], limit=10)
    feed(
        h,
        [
            ("old", 0, 3, rec("old")),
            ("ahead", 0, 7, rec("ahead")),
            ("before", 1, 4, rec("before")),
            ("x", 1, 5, rec("x")),
            ("later", 1, 6, rec("later")),
            ("ahead", 0, 9, rec("ahead", TaskStatus.DEAD)),
        ],
    )
    # Then x, the record of partition 0 stamped after it and the later one of its own partition
    # are kept (the newer "ahead" record wins); older records are not; "never" is missing
    assert set(h.found) == {b"x", b"ahead", b"later"}
    assert h.found[b"ahead"].record.status is TaskStatus.DEAD
    assert h.missing() == ["never"]


def test_the_earliest_stamped_neighbours_are_kept_whatever_the_order_read() -> None:
    # Given a scan for "x" (partition 1, timestamp 5) with room for 2 neighbours, which read
    # partition 0 (stamps 9, 8, 6) before it and partition 2 (stamps 7, 5) after it
    h = harvest(["x"], limit=2)
    feed(h, [("p9", 0, 9, rec("p9")), ("p8", 0, 8, rec("p8")), ("p6", 0, 6, rec("p6"))])
    feed(h, [("x", 1, 5, rec("x")), ("q7", 2, 7, rec("q7")), ("q5", 2, 5, rec("q5"))])
    # Then the two earliest after x are kept: 5 and 6
    assert set(h.found) == {b"x", b"q5", b"p6"}


def test_an_undecodable_record_is_not_kept_and_a_tombstone_only_moves_the_end() -> None:
    h = harvest(["a"], limit=5)
    h.read(b"a", b"garbage", 0, 0, 0)
    h.read(b"a", None, 0, 1, 1)
    h.finish()
    assert h.found == {} and h.missing() == ["a"] and h.ends == {0: 2}


def test_the_prefetch_is_a_bounded_fraction_of_the_capacity() -> None:
    assert prefetch_limit(200_000) == 50_000
    assert prefetch_limit(5) == 1


class FakeScans:
    """A scan that blocks until released, recording which ids each scan was asked for."""

    def __init__(self) -> None:
        self.calls: list[set[str]] = []
        self.started = threading.Event()
        self.release = threading.Event()
        self.known: set[str] = set()
        self.fail = False

    def __call__(self, ids: set[str]) -> None:
        self.calls.append(set(ids))
        self.started.set()
        assert self.release.wait(10)
        if self.fail:
            raise BrokerError("broker down")
        self.known |= ids


def test_ids_waiting_when_a_scan_starts_share_it_and_later_ones_wait_for_the_next() -> None:
    # Given a scan running for "a"
    scans = FakeScans()
    r = Recaller(scans, scans.known.__contains__)
    t_a = threading.Thread(target=r.recall, args=("a",))
    t_a.start()
    assert scans.started.wait(10)
    # When three more look-ups arrive while it runs
    others = [threading.Thread(target=r.recall, args=(k,)) for k in "bcd"]
    for t in others:
        t.start()
    while len(r._pending) < 3:  # all three queued behind the running scan
        threading.Event().wait(0.01)
    scans.release.set()
    for t in [t_a, *others]:
        t.join(10)
    # Then they were served by one more scan, not three
    assert scans.calls == [{"a"}, {"b", "c", "d"}]
    assert r.scans == 2 and r.lookups == 4


def test_an_id_brought_back_by_the_running_scan_does_not_need_another() -> None:
    # Given a scan running for "a" whose refill will bring "b" back
    scans = FakeScans()

    def scan(ids: set[str]) -> None:
        scans(ids)
        scans.known.add("b")

    r = Recaller(scan, scans.known.__contains__)
    t_a = threading.Thread(target=r.recall, args=("a",))
    t_a.start()
    assert scans.started.wait(10)
    # When "b" is asked for during that scan
    t_b = threading.Thread(target=r.recall, args=("b",))
    t_b.start()
    while not r._pending:
        threading.Event().wait(0.01)
    scans.release.set()
    t_a.join(10)
    t_b.join(10)
    # Then no second scan ran
    assert scans.calls == [{"a"}]


def test_a_failed_scan_raises_broker_error_to_its_waiters_and_the_next_one_runs() -> None:
    scans = FakeScans()
    scans.fail = True
    scans.release.set()
    r = Recaller(scans, scans.known.__contains__)
    # When the scan fails, the waiter gets BrokerError (never "no result")
    with pytest.raises(BrokerError, match="broker down"):
        r.recall("a")
    # and a later look-up runs a new scan
    scans.fail = False
    r.recall("a")
    assert scans.calls == [{"a"}, {"a"}]


class Msg:
    """What the listener's reading thread looks at in a consumed record."""

    def __init__(self, partition: int, offset: int, key: str) -> None:
        self._p, self._o, self._k = partition, offset, key

    def error(self) -> None:
        return None

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def key(self) -> bytes:
        return self._k.encode()

    def value(self) -> bytes:
        return b"v"


def test_records_the_listener_skipped_before_a_handoff_are_read_and_newer_ones_win() -> None:
    # Given a listener that read partition 0 up to offset 10, not following "x" (forgotten)
    app = App("recalltest", bootstrap_servers="127.0.0.1:1")
    listener = app.results_listener()
    pending_eof: set[int] = {0}
    assert listener._select([Msg(0, 9, "x")], pending_eof) == []  # type: ignore[list-item]
    # and a scan that found "x" STARTED at offset 5 and read partition 0 only up to 7
    h = Harvest(["x"], 4, lambda v, p, o: rec(v.decode(), TaskStatus.STARTED))
    h.read(b"x", b"x", 0, 5, 5)
    h.read(b"y", b"y", 0, 6, 6)
    h.finish()
    # When the scan hands over
    handed = listener._handoff(h)
    # Then the listener follows x and y with the scan's records, and the gap 7..10 it skipped
    # is to be read again
    assert handed.owned == {"x", "y"} and handed.gaps == {0: (7, 10)}
    assert listener._latest.get("x") == rec("x", TaskStatus.STARTED)
    # and a record of y the listener reads from now on wins over an older one from the gap
    listener._store([rec("y")])
    listener._settle([rec("x"), rec("y", TaskStatus.DEAD)])
    assert listener._latest.get("x") == rec("x") and listener._latest.get("y") == rec("y")
    app.close()


def test_a_timeouts_description_names_the_last_state_and_the_read_positions() -> None:
    # Given a listener that follows "x" and has read partition 1 up to offset 4
    app = App("recalltest", bootstrap_servers="127.0.0.1:1")
    listener = app.results_listener()
    listener._expected["x"] = None
    listener._select([Msg(1, 3, "other")], {1})  # type: ignore[list-item]
    # Then before any record of x: nothing read yet, not at the end of the topic
    text = listener.describe("x")
    assert text.startswith("no record of it read yet;"), text
    assert ".results not yet read to its end" in text and "partition: 1: ?..4)" in text, text
    # and once a STARTED record was read, that state and its attempt
    listener._store([ResultRecord("x", "t", TaskStatus.STARTED, 2, 0)])
    assert listener.describe("x").startswith("last state read: STARTED (attempt 2);")
    # and an id this process does not remember says so
    assert listener.describe("y").startswith("not remembered by this process")
    app.close()
