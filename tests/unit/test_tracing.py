"""Trace context: parsing traceparent, what send() carries, the task span, follow-on records."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from structlog.testing import CapturingLogger

from streamtasks import App, tracing
from streamtasks.context import _current, _Pending, current_traceparent
from streamtasks.wire import tracecontext
from streamtasks.wire.headers import REPLAY, TRACEPARENT
from streamtasks.wire.tracecontext import TraceParent, parse_traceparent
from streamtasks.worker.executor import Executor
from streamtasks.worker.outcomes import Outcome, Output, Record

TP = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module")
def tracer() -> trace.Tracer:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    tracing._Provider.next_look = 0.0  # look again now: the SDK was just configured
    return trace.get_tracer("test")


def test_a_valid_traceparent_is_parsed_and_formatted_back() -> None:
    parsed = parse_traceparent(TP.encode())
    assert parsed == TraceParent("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1)
    assert parsed.value() == TP and parsed.sampled
    future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more"
    assert parse_traceparent(future) == TraceParent(parsed.trace_id, parsed.span_id, 0)


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"garbage",
        TP.upper().encode(),  # upper case is not allowed
        TP[:-1].encode(),  # too short
        (TP + "-x").encode(),  # version 00 has exactly four fields
        b"ff" + TP[2:].encode(),  # version ff is invalid
        b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",  # all-zero trace id
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-" + b"0" * 16 + b"-01",  # all-zero span id
        b"\xff\xfe",  # not ASCII
    ],
)
def test_a_malformed_traceparent_is_dropped_with_a_debug_log(
    raw: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    logger = CapturingLogger()  # the app's log configuration may filter debug out
    monkeypatch.setattr(tracecontext, "log", logger)
    assert parse_traceparent(raw) is None
    assert [c.method_name for c in logger.calls] == ["debug"]
    assert "traceparent dropped" in logger.calls[0].args[0]


def test_with_the_api_but_no_sdk_there_is_no_span_and_the_header_is_passed_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing._Provider, "recording", False)
    monkeypatch.setattr(tracing._Provider, "next_look", float("inf"))
    with tracing.task_span(b"t", TP.encode(), "topic", 0, 1) as carried:
        assert carried == TP
        assert not trace.get_current_span().get_span_context().is_valid


def test_without_opentelemetry_the_task_span_passes_the_header_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "OTEL", False)
    with tracing.task_span(b"t", TP.encode(), "topic", 0, 1) as carried:
        assert carried == TP
    with tracing.task_span(b"t", b"bad", "topic", 0, 1) as carried:
        assert carried is None
    with tracing.task_span(b"t", None, "topic", 0, 1) as carried:
        assert carried is None
    assert tracing.outgoing() is None  # outside a task, no span: nothing to carry


def test_send_from_inside_a_task_carries_the_task_traceparent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(tracing, "OTEL", False)
    token = _current.set(_Pending(lambda: None, TP))  # type: ignore[arg-type, return-value]
    try:
        assert current_traceparent() == TP
        assert tracing.outgoing() == TP
    finally:
        _current.reset(token)
    assert current_traceparent() is None


def test_with_an_sdk_the_task_runs_in_a_span_that_continues_the_sender(
    tracer: trace.Tracer,
) -> None:
    EXPORTER.clear()
    with tracing.task_span(b"mod.add", TP.encode(), "ns.tasks.q", 3, 42) as carried:
        assert tracing.outgoing() == carried  # send() inside the task: this span is the parent
        tracing.record_outcome("failure")
    assert carried is not None
    child = parse_traceparent(carried)
    assert child is not None and child.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert child.span_id != "00f067aa0ba902b7"
    (span,) = EXPORTER.get_finished_spans()
    assert span.name == "run mod.add"
    assert span.parent is not None and f"{span.parent.span_id:016x}" == "00f067aa0ba902b7"
    assert span.attributes is not None and span.attributes["messaging.kafka.offset"] == 42
    assert span.attributes["streamtasks.outcome"] == "failure"
    assert not span.status.is_ok
    # the active span of a sender is what send() carries
    with tracer.start_as_current_span("request") as request:
        ctx = request.get_span_context()
        assert (
            tracing.outgoing()
            == TraceParent(
                f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags)
            ).value()
        )


def test_follow_on_task_records_carry_the_task_traceparent_and_others_do_not() -> None:
    # Given a retry record (carrying the old header), a next chain step and a result record
    ns = SimpleNamespace(_ns="streamtasks", _chords="streamtasks.chords")
    rec = Record("streamtasks.tasks.q", 0, 1, None, b"", [(REPLAY, b"r1")])
    retry = Output("streamtasks.tasks.q.retry.1", None, b"", [(TRACEPARENT, b"old")])
    step = Output("streamtasks.tasks.q", None, b"", [])
    result = Output("streamtasks.results", None, b"", [])
    member = Output("streamtasks.chords", None, b"", [])  # to the join: its callback goes on
    outcome = Outcome("retry", (retry, step, member), (result,))
    # When the task's follow-ons are marked with its traceparent
    marked = Executor._follow_on(ns, rec, outcome, TP, b"r1")  # type: ignore[arg-type]
    # Then each task record carries it once (and the replay mark); the result does not
    assert marked.outputs[0].headers == [(TRACEPARENT, TP.encode()), (REPLAY, b"r1")]
    assert marked.outputs[1].headers == [(TRACEPARENT, TP.encode()), (REPLAY, b"r1")]
    assert marked.outputs[2].headers == [(TRACEPARENT, TP.encode())]  # no replay mark
    assert marked.then == (result,)
    # and without a trace or a replay nothing is copied
    plain = Record("streamtasks.tasks.q", 0, 1, None, b"", [])
    assert Executor._follow_on(ns, plain, outcome, None, None) is outcome  # type: ignore[arg-type]


class _Sent:
    """Captures what an app would produce (no broker)."""

    def __init__(self, app: App, monkeypatch: pytest.MonkeyPatch) -> None:
        self.headers: list[dict[str, bytes]] = []
        listener = SimpleNamespace(expect=lambda _id: None, expect_many=lambda _ids: None)
        monkeypatch.setattr(app, "results_listener", lambda **_kw: listener)
        monkeypatch.setattr(app, "produce", self._produce)
        idle = SimpleNamespace(poll=lambda _t: 0, produce=self._produce)
        monkeypatch.setattr(App, "producer", property(lambda _self: idle))

    def _produce(self, topic: str, value: bytes | None = None, **kw: object) -> None:
        self.headers.append(dict(kw["headers"]))  # type: ignore[call-overload]


def test_send_puts_the_right_traceparent_on_the_record(
    tracer: trace.Tracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("tp", bootstrap_servers="127.0.0.1:1")

    @app.task(name="t")
    def t() -> None: ...

    sent = _Sent(app, monkeypatch)
    t.send()  # no trace anywhere: no header
    t.apply_async(headers={"traceparent": "00-sender-own"})  # the caller's own wins, once
    token = _current.set(_Pending(lambda: None, TP))  # type: ignore[arg-type, return-value]
    try:
        t.send()  # from inside a task: the task's trace goes on
    finally:
        _current.reset(token)
    with tracer.start_as_current_span("request") as span:
        t.send()  # the active span's
        ctx = span.get_span_context()
    assert [h.get(TRACEPARENT) for h in sent.headers] == [
        None,
        b"00-sender-own",
        TP.encode(),
        f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}".encode(),
    ]


def test_send_many_puts_the_callers_traceparent_on_every_record_and_the_callers_own_wins(
    tracer: trace.Tracer, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = App("tp", bootstrap_servers="127.0.0.1:1")

    @app.task(name="t")
    def t(i: int) -> None: ...

    sent = _Sent(app, monkeypatch)
    t.send_many([(1,), (2,)])  # no trace anywhere: no header
    with tracer.start_as_current_span("batch") as span:
        t.send_many([(3,), (4,), (5,)])  # the active span's, looked up once for the batch
        ctx = span.get_span_context()
        t.send_many([(6,)], headers={"traceparent": "00-sender-own"})
    active = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}".encode()
    assert [h.get(TRACEPARENT) for h in sent.headers] == [
        None,
        None,
        active,
        active,
        active,
        b"00-sender-own",
    ]
