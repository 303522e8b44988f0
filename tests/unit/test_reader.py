"""The pure search behind reader.offset_for_time (a broker hint verified, else a binary
search), and the readers' fetch-wait floor."""

from __future__ import annotations

import bisect
from typing import Any

import pytest

from streamtasks import App
from streamtasks.kafka import clients, reader
from streamtasks.kafka.reader import open_reader, search_time
from streamtasks.worker.indexes import REVOKED_FETCH_WAIT_MS, RevokedIndex


class Partition:
    """Records at ``offsets`` (gaps allowed) stamped ``stamps``; counts the records read."""

    def __init__(self, offsets: list[int], stamps: list[int]) -> None:
        self.offsets, self.stamps, self.reads = offsets, stamps, 0

    @property
    def low(self) -> int:
        return self.offsets[0]

    @property
    def end(self) -> int:
        return self.offsets[-1] + 1

    def probe(self, offset: int) -> tuple[int, int] | None:
        self.reads += 1
        i = bisect.bisect_left(self.offsets, offset)
        return None if i == len(self.offsets) else (self.offsets[i], self.stamps[i])

    def search(self, ts: int, hint: int | None) -> int:
        return search_time(ts, self.low, self.end, self.stamps[0], hint, self.probe)


def dense(n: int) -> Partition:
    return Partition(list(range(n)), [1000 + 10 * i for i in range(n)])


@pytest.mark.parametrize("hint", [None, 0, 3, 999_999])  # none, Tansu's 0, wrong, beyond the end
def test_a_missing_or_wrong_hint_falls_back_to_a_bounded_search(hint: int | None) -> None:
    p = dense(10_000)
    # Given a time between two records, and one exactly on a record
    assert p.search(1000 + 10 * 4321 - 5, hint) == 4321
    assert p.search(1000 + 10 * 4321, hint) == 4321
    assert p.reads <= 2 * 40  # ~log2(10,000) probes per search, plus the hint's check


def test_a_right_hint_is_accepted_after_two_reads() -> None:
    p = dense(10_000)
    assert p.search(1000 + 10 * 4321, 4321) == 4321
    assert p.reads == 2


def test_times_before_the_first_or_after_the_last_record() -> None:
    p = dense(100)
    assert p.search(0, None) == 0
    assert p.search(10**9, None) == 100  # the end
    assert p.search(10**9, 0) == 100


def test_offsets_with_gaps_compaction_or_markers() -> None:
    p = Partition([5, 6, 9, 20, 21, 40], [100, 110, 120, 130, 140, 150])
    # whatever offset is returned, no record before it is stamped >= the time
    for ts in range(95, 160, 5):
        got = p.search(ts, None)
        assert all(s < ts for o, s in zip(p.offsets, p.stamps, strict=True) if o < got)
        assert all(s >= ts for o, s in zip(p.offsets, p.stamps, strict=True) if o >= got)


def test_a_stale_end_does_not_cut_the_search_short() -> None:
    p = dense(50)
    # the broker's end is reported too low: the search still answers within what it was told
    assert search_time(1000 + 10 * 30, p.low, 40, p.stamps[0], None, p.probe) == 30


@pytest.mark.parametrize(
    ("configured", "floor", "used"),
    [
        ({"fetch.wait.max.ms": 10}, 250, 250),  # raised to the floor
        ({"fetch.wait.max.ms": 1000}, 250, 1000),  # a longer wait is kept
        ({}, 250, None),  # librdkafka's default (500 ms) is longer already: left unset
        ({"fetch.wait.max.ms": 10}, None, 10),  # no floor: the app's setting
    ],
)
def test_a_reader_fetch_wait_is_raised_to_its_floor_only(
    monkeypatch: pytest.MonkeyPatch,
    configured: dict[str, int],
    floor: int | None,
    used: int | None,
) -> None:
    made: list[dict[str, Any]] = []
    monkeypatch.setattr(clients, "make_consumer", made.append)
    app = App("unit", bootstrap_servers="127.0.0.1:1", consumer_config=configured)
    open_reader(app, min_fetch_wait_ms=floor)
    (cfg,) = made
    assert cfg.get("fetch.wait.max.ms") == used
    assert cfg["enable.partition.eof"] is True


def test_the_revoked_index_reads_with_the_long_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int | None] = []

    def fake_open(app: App, *, min_fetch_wait_ms: int | None = None) -> None:
        seen.append(min_fetch_wait_ms)
        raise RuntimeError("no broker in a unit test")  # the index thread logs it and stops

    monkeypatch.setattr(reader, "open_reader", fake_open)
    index = RevokedIndex(App("unit", bootstrap_servers="127.0.0.1:1"))
    index.close()
    assert seen == [REVOKED_FETCH_WAIT_MS]
