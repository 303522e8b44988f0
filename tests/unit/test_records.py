"""The typed chord records: what the worker writes is what the join reads, through the codec."""

from __future__ import annotations

from streamtasks import App
from streamtasks.wire.envelope import ErrorInfo
from streamtasks.wire.records import ChordJoin, ChordMember


def _app() -> App:
    return App("unit", bootstrap_servers="127.0.0.1:1", namespace="unit")


def test_a_chord_join_survives_its_avro_schema() -> None:
    # Given a join with a chain after its callback and an error callback
    app = _app()
    join = ChordJoin("c1", 2, 3, b"body", (b"step1", b"step2"), (b"errback",))

    # When it is encoded and decoded with the chord join schema
    frame = app.codec.encode(app.chord_join_schema, join.to_avro())
    _, raw = app.codec.decode(frame, expect=app.chord_join_schema)

    # Then it is the same join
    assert ChordJoin.from_avro(raw) == join


def test_a_failed_member_keeps_its_error_and_a_missing_one_reads_as_none() -> None:
    app = _app()
    failed = ChordMember(b"join", "m1", "add", "FAILURE", None, ErrorInfo("E", "no", "tb"), 7)
    done = ChordMember(b"join", "m2", "add", "SUCCESS", b"value", None, 8)
    for member in (failed, done):
        value = app.codec.encode(app.chord_member_schema, member.to_avro())
        _, raw = app.codec.decode(value, expect=app.chord_member_schema)
        assert ChordMember.from_avro(raw) == member
