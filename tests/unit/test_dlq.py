"""Dead-letter tooling, the pure parts: parsing records, filters, state markers, formatting."""

from __future__ import annotations

import pytest

from streamtasks import App
from streamtasks.errors import ConfigError
from streamtasks.ops.dlq import (
    DeadLetter,
    DeadLetterFilter,
    Origin,
    RawRecord,
    RedriveOutcome,
    RedriveReport,
    StateMarker,
    apply_markers,
    dlq_state_topic,
    format_age,
    latest_markers,
    redrive_headers,
    reset_envelope,
    truncate,
    unredrivable_reason,
)
from streamtasks.wire.envelope import Envelope, ErrorInfo

T0 = 1_700_000_000_000


@pytest.fixture
def app() -> App:
    a = App("unit", bootstrap_servers="127.0.0.1:1")

    @a.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @a.task(name="greet")
    def greet(name: str) -> str:
        return f"hello {name}"

    return a


def _env(app: App, task: str = "add", **kw: object) -> Envelope:
    args = app.tasks[task].encode_args((1, 2) if task == "add" else ("bob",), {})
    fields: dict[str, object] = {
        "id": "t-1",
        "task": task,
        "queue": "default",
        "args": args,
        "attempt": 4,
        "eta": T0 + 5000,
        "last_error": ErrorInfo("ValueError", "boom", "tb"),
        **kw,
    }
    return Envelope(**fields)  # type: ignore[arg-type]


def _dlq_headers(**over: str) -> list[tuple[str, bytes | None]]:
    h = {
        "st-task": "add",
        "st-id": "t-1",
        "st-attempt": "4",
        "traceparent": "00-abc-def-01",
        "st-dlq-reason": "max-attempts",
        "st-error-type": "ValueError",
        "st-error-message": "boom: database unreachable",
        "st-traceback": "Traceback (most recent call last):\n  ...\nValueError: boom",
        "st-attempts": "4",
        "st-first-failure": str(T0),
        "st-last-failure": str(T0 + 60_000),
        "st-origin-topic": "ns.tasks.default",
        "st-origin-partition": "2",
        "st-origin-offset": "17",
        "st-worker-id": "host-1-abc",
        **over,
    }
    return [(k, v.encode()) for k, v in h.items()]


def _letter(
    app: App,
    *,
    partition: int = 0,
    offset: int = 0,
    value: bytes | None = None,
    headers: list[tuple[str, bytes | None]] | None = None,
    ts: int | None = T0 + 60_000,
) -> DeadLetter:
    record = RawRecord(
        partition=partition,
        offset=offset,
        timestamp_ms=ts,
        key=b"t-1",
        value=value,
        headers=tuple(headers if headers is not None else _dlq_headers()),
    )
    return DeadLetter.parse(record, codec=app.codec, envelope_schema=app.envelope_schema)


def _encoded(app: App, env: Envelope) -> bytes:
    return app.codec.encode(app.envelope_schema, env.to_avro())


# -- parsing ----------------------------------------------------------------------------------


def test_a_dead_task_is_parsed_from_its_headers_and_envelope(app: App) -> None:
    # Given a dead letter as the worker writes it
    letter = _letter(app, partition=3, offset=41, value=_encoded(app, _env(app)))
    # Then every header is available, typed
    assert letter.ref == "3:41"
    assert (letter.task_id, letter.task, letter.reason) == ("t-1", "add", "max-attempts")
    assert letter.error == "ValueError: boom: database unreachable"
    assert letter.traceback is not None and letter.traceback.endswith("ValueError: boom")
    assert letter.attempts == 4
    assert (letter.first_failure_ms, letter.last_failure_ms) == (T0, T0 + 60_000)
    assert letter.origin == Origin("ns.tasks.default", 2, 17)
    assert str(letter.origin) == "ns.tasks.default[2]@17"
    assert letter.worker_id == "host-1-abc"
    assert letter.headers["traceparent"] == "00-abc-def-01"
    assert letter.state == "dead"
    # And the envelope is decoded
    assert letter.envelope is not None and letter.envelope.attempt == 4
    assert letter.envelope_error is None


def test_undecodable_bytes_and_missing_headers_do_not_break_parsing(app: App) -> None:
    # Given random bytes with only a reason, and a record with no value and no headers at all
    junk = _letter(app, value=b"\x00garbage", headers=[("st-dlq-reason", b"undecodable")])
    empty = _letter(app, value=None, headers=[], ts=None)
    # Then both parse; what is unknown is None
    assert junk.envelope is None and junk.envelope_error is not None
    assert "single-object" in junk.envelope_error
    assert (junk.task_id, junk.task, junk.attempts, junk.origin) == (None, None, None, None)
    assert junk.reason == "undecodable"
    assert empty.reason == "unknown" and empty.envelope is None
    assert empty.error == "?: " and empty.failed_at_ms is None


def test_a_dead_letter_whose_value_was_dropped_says_so(app: App) -> None:
    headers = [*_dlq_headers(), ("st-value-dropped", b"record too large (3145728 bytes)")]
    letter = _letter(app, value=None, headers=headers)
    assert letter.envelope is None
    assert letter.envelope_error == "the value was dropped: record too large (3145728 bytes)"
    assert (letter.task_id, letter.task) == ("t-1", "add")
    assert unredrivable_reason(letter, app) == f"not a task envelope ({letter.envelope_error})"


def test_malformed_numbers_in_headers_become_none(app: App) -> None:
    letter = _letter(
        app,
        headers=_dlq_headers(**{"st-attempts": "three", "st-origin-offset": "x"}),
    )
    assert letter.attempts is None
    assert letter.origin is None
    assert letter.failed_at_ms == T0 + 60_000


def test_task_id_falls_back_to_the_headers_when_the_value_does_not_decode(app: App) -> None:
    letter = _letter(app, value=b"not avro")
    assert (letter.task_id, letter.task) == ("t-1", "add")


def test_the_envelope_wins_over_headers_when_both_are_there(app: App) -> None:
    env = _env(app, id="from-envelope")
    letter = _letter(app, value=_encoded(app, env))
    assert letter.task_id == "from-envelope"


def test_to_json_is_serialisable_and_leaves_out_the_raw_arguments(app: App) -> None:
    import json

    letter = _letter(app, value=_encoded(app, _env(app)))
    out = json.loads(json.dumps(letter.to_json()))
    assert out["ref"] == "0:0" and out["origin"] == {
        "topic": "ns.tasks.default",
        "partition": 2,
        "offset": 17,
    }
    assert out["envelope"]["id"] == "t-1" and "args" not in out["envelope"]
    assert out["headers"]["st-dlq-reason"] == "max-attempts"


# -- filters ----------------------------------------------------------------------------------


def test_filters_match_task_reason_and_error_regex(app: App) -> None:
    letter = _letter(app, value=_encoded(app, _env(app)))
    assert DeadLetterFilter().matches(letter)
    assert DeadLetterFilter(task="add").matches(letter)
    assert not DeadLetterFilter(task="ad").matches(letter)
    assert DeadLetterFilter(reason="max-attempts").matches(letter)
    assert not DeadLetterFilter(reason="undecodable").matches(letter)
    # the regex is searched in "Type: message", so it can match the type, the message or both
    assert DeadLetterFilter(error_match="^ValueError").matches(letter)
    assert DeadLetterFilter(error_match="database unreach").matches(letter)
    assert DeadLetterFilter(error_match="Value.*database").matches(letter)
    assert not DeadLetterFilter(error_match="^boom").matches(letter)
    assert not DeadLetterFilter(task="add", error_match="Timeout").matches(letter)


def test_an_invalid_regex_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"error_match '\(' is not a valid regular expression"):
        DeadLetterFilter(error_match="(")


# -- state markers ----------------------------------------------------------------------------


def _marker_record(
    ref: str | None, value: bytes | None, ts: int | None = None, offset: int = 0
) -> RawRecord:
    headers = () if ts is None else (("st-dlq-timestamp", str(ts).encode()),)
    key = None if ref is None else ref.encode()
    return RawRecord(0, offset, T0, key, value, headers)


def test_state_markers_are_parsed_and_junk_is_ignored() -> None:
    assert StateMarker.parse(_marker_record("1:2", b"redriven", ts=5)) == StateMarker(
        "1:2", "redriven", 5
    )
    assert StateMarker.parse(_marker_record("1:2", b"purged")) == StateMarker("1:2", "purged")
    assert StateMarker.parse(_marker_record("1:2", None)) == StateMarker("1:2", "dead")
    assert StateMarker.parse(_marker_record("1:2", b"eaten")) is None
    assert StateMarker.parse(_marker_record("not-a-ref", b"purged")) is None
    assert StateMarker.parse(_marker_record(None, b"purged")) is None


def test_the_last_marker_per_ref_wins() -> None:
    markers = latest_markers(
        [
            StateMarker("0:1", "purged"),
            None,
            StateMarker("0:2", "redriven"),
            StateMarker("0:1", "dead"),  # a tombstone undid the purge
        ]
    )
    assert markers == {"0:1": StateMarker("0:1", "dead"), "0:2": StateMarker("0:2", "redriven")}


def test_markers_are_joined_by_ref_and_stale_ones_are_ignored(app: App) -> None:
    # Given three dead letters
    a = _letter(app, partition=0, offset=1, ts=T0)
    b = _letter(app, partition=0, offset=2, ts=T0)
    c = _letter(app, partition=1, offset=1, ts=T0)
    # And markers: one for a, one for b written for an older record at the same offset (the
    # DLQ topic was deleted and recreated), and none for c
    markers = {
        "0:1": StateMarker("0:1", "redriven", T0),
        "0:2": StateMarker("0:2", "purged", T0 - 1),
    }
    # When joined
    joined = apply_markers([a, b, c], markers)
    # Then only a changes state
    assert [d.state for d in joined] == ["redriven", "dead", "dead"]
    # And a marker without a timestamp applies regardless
    assert apply_markers([c], {"1:1": StateMarker("1:1", "purged")})[0].state == "purged"


# -- redrive (pure parts) ---------------------------------------------------------------------


def test_reset_envelope_keeps_identity_and_arguments_and_restarts_attempts(app: App) -> None:
    env = _env(app)
    reset = reset_envelope(env)
    assert (reset.id, reset.task, reset.queue, reset.args) == (
        env.id,
        env.task,
        env.queue,
        env.args,
    )
    assert (reset.attempt, reset.eta, reset.last_error) == (1, None, None)
    assert reset.created_at == env.created_at and reset.expires == env.expires


def test_redrive_headers_renew_st_headers_and_keep_the_users(app: App) -> None:
    letter = _letter(app, partition=2, offset=9, value=_encoded(app, _env(app)))
    assert letter.envelope is not None
    headers = dict(redrive_headers(letter, reset_envelope(letter.envelope), "ns.tasks.default.dlq"))
    assert headers == {
        "st-task": b"add",
        "st-id": b"t-1",
        "st-attempt": b"1",
        "st-redriven-from": b"ns.tasks.default.dlq:2:9",
        "traceparent": b"00-abc-def-01",
    }


def test_only_envelopes_the_app_can_run_are_redrivable(app: App) -> None:
    good = _letter(app, value=_encoded(app, _env(app)))
    junk = _letter(app, value=b"junk")
    unknown = _letter(
        app, value=_encoded(app, Envelope(id="u", task="gone.task", queue="default", args=b""))
    )
    wrong_args = _letter(
        app, value=_encoded(app, _env(app, args=app.tasks["greet"].encode_args(("x",), {})))
    )
    assert unredrivable_reason(good, app) is None
    assert (unredrivable_reason(junk, app) or "").startswith("not a task envelope")
    assert unredrivable_reason(unknown, app) == "task 'gone.task' is not registered in app 'unit'"
    assert "arguments do not decode" in (unredrivable_reason(wrong_args, app) or "")


def test_a_redrive_report_counts_each_kind() -> None:
    report = RedriveReport(
        (
            RedriveOutcome("0:1", "a", "redriven"),
            RedriveOutcome("0:2", "b", "already-done", "purged"),
            RedriveOutcome("0:3", None, "unredrivable", "not a task envelope"),
            RedriveOutcome("0:4", "d", "failed", "task not enqueued: timed out"),
            RedriveOutcome("0:5", "e", "redriven"),
        )
    )
    assert report.over_limit == 0
    assert (report.selected, report.redriven, report.skipped_already_done) == (5, 2, 1)
    assert (report.skipped_unredrivable, report.failed) == (1, 1)
    assert report.summary() == (
        "redriven 2 of 5 selected; skipped 1 already redriven/purged, 1 not redrivable; 1 failed"
    )
    dry = RedriveReport(
        (RedriveOutcome("0:1", "a", "would-redrive"), RedriveOutcome("0:2", "b", "over-limit")),
        dry_run=True,
    )
    assert (dry.redriven, dry.over_limit) == (1, 1)
    assert dry.summary() == (
        "would redrive 1 of 2 selected; skipped 0 already redriven/purged, 0 not redrivable, "
        "1 over the limit; 0 failed"
    )


# -- names and formatting ---------------------------------------------------------------------


def test_the_state_topic_sits_next_to_the_dlq() -> None:
    assert dlq_state_topic("ns", "emails") == "ns.tasks.emails.dlq.state"


@pytest.mark.parametrize(
    ("ago_ms", "text"),
    [
        (0, "0s"),
        (999, "0s"),
        (59_999, "59s"),
        (60_000, "1m"),
        (3_599_000, "59m"),
        (3_600_000, "1h"),
        (86_399_000, "23h"),
        (86_400_000 * 3 + 5, "3d"),
        (-5_000, "0s"),  # a clock ahead of ours is not a negative age
    ],
)
def test_format_age(ago_ms: int, text: str) -> None:
    assert format_age(T0 - ago_ms, T0) == text


def test_format_age_of_unknown_time() -> None:
    assert format_age(None, T0) == "-"


def test_truncate_flattens_and_cuts() -> None:
    assert truncate("short", 10) == "short"
    assert truncate("line one\n  line two", 100) == "line one line two"
    assert truncate("abcdefghij", 5) == "abcd…"
    assert len(truncate("x" * 500, 60)) == 60
