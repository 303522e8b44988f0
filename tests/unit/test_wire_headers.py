"""The wire contract's header names, header sets and deterministic ids (streamtasks.wire)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from streamtasks.errors import ArgumentError
from streamtasks.wire import headers as hdr
from streamtasks.wire import ids
from streamtasks.wire.envelope import Envelope


def _names() -> list[str]:
    """The ``st-*`` names (``PREFIX`` and the W3C ``TRACEPARENT`` are not own headers)."""
    return [
        v
        for k, v in vars(hdr).items()
        if k.isupper() and isinstance(v, str) and k not in ("PREFIX", "TRACEPARENT")
    ]


def test_every_header_name_is_an_own_header_and_unique() -> None:
    names = _names()
    assert names and all(hdr.is_own(n) for n in names)
    assert len(names) == len(set(names))
    assert not hdr.is_own(hdr.TRACEPARENT)  # a redrive or replay keeps it


def test_task_headers_name_the_task_its_id_and_attempt() -> None:
    env = Envelope(id="t1", task="mod.add", queue="default", args=b"", attempt=3)
    assert hdr.task_headers(env) == [
        ("st-task", b"mod.add"),
        ("st-id", b"t1"),
        ("st-attempt", b"3"),
    ]
    assert hdr.task_headers(env, attempt=4)[2] == ("st-attempt", b"4")


def test_dead_letter_headers_read_back_what_they_wrote() -> None:
    written = hdr.DeadLetterHeaders(
        reason="max-retries",
        error_type="ValueError",
        error_message="boom",
        traceback="Traceback ...",
        attempts=3,
        first_failure_ms=10,
        last_failure_ms=20,
        origin_topic="ns.tasks.default",
        origin_partition=1,
        origin_offset=42,
        worker_id="w1",
    )
    raw = written.write()
    assert raw[0] == ("st-dlq-reason", b"max-retries")
    decoded = {k: bytes(v).decode() for k, v in raw if isinstance(v, bytes)}
    assert hdr.DeadLetterHeaders.parse(decoded) == written


def test_dead_letter_headers_parse_never_raises() -> None:
    got = hdr.DeadLetterHeaders.parse({"st-attempts": "many", "st-origin-offset": ""})
    assert got.reason == "unknown"
    assert got.attempts is None and got.origin_offset is None


def test_deterministic_ids_round_trip_and_do_not_collide() -> None:
    assert ids.step_id("r", 2) == "wf.r.2"
    assert ids.parse_step_id(ids.step_id("a.b", 7)) == ("a.b", 7)
    assert ids.parse_step_id(ids.member_id("r", 0)) is None
    assert ids.parse_step_id(ids.chord_marker_id("r")) is None
    assert ids.errback_id("t", 0) == "err.t.0"
    fire = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    fid = ids.fire_task_id("nightly", fire)
    assert fid == "sched.nightly.1767323045000"
    assert ids.parse_fire_task_id(fid) == ("nightly", fire)
    assert ids.parse_fire_task_id(ids.step_id("r", 0)) is None
    with pytest.raises(ArgumentError):
        ids.fire_task_id("bad name", fire)
    with pytest.raises(ArgumentError):
        ids.fire_task_id("nightly", datetime(2026, 1, 2))  # naive: refused


def test_a_header_pair_is_what_two_header_lookups_give() -> None:
    cases: list[list[tuple[str, bytes | str]]] = [
        [],
        [("a", b"1")],
        [("b", "two")],
        [("a", b"1"), ("x", b"-"), ("b", b"2"), ("a", b"3")],  # the last value wins
        [("b", b"2"), ("b", "4")],
    ]
    for headers in cases:
        pair = hdr.header_pair(headers, "a", "b")
        assert pair == (hdr.header(headers, "a"), hdr.header(headers, "b"))
    assert hdr.header_pair(None, "a", "b") == (None, None)
