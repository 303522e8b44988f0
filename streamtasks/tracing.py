"""Trace context across tasks: what ``send()`` puts in ``traceparent``, and the task's span.

* :func:`outgoing` — the ``traceparent`` of a record being sent now: the active OpenTelemetry
  span's, when ``opentelemetry-api`` is installed (``pip install streamtasks[otel]``) and a span
  is active; else the running task's own (sent from inside a task: the trace goes on).
* :func:`task_span` — on a worker, around one task: with OpenTelemetry, a ``CONSUMER`` span
  ``run {task}`` whose parent is the record's ``traceparent`` (a new trace when it has none);
  it yields the ``traceparent`` the task's follow-on records carry (the span's own, or, without
  OpenTelemetry or with only its API and no SDK configured, the record's as it came: no span).

Invariants: without OpenTelemetry nothing here costs more than finding and checking the
header; a malformed ``traceparent`` is dropped with a debug log (see
:mod:`streamtasks.wire.tracecontext`), never an error for the task.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from streamtasks.context import current_traceparent
from streamtasks.wire.tracecontext import TraceParent, checked_traceparent, parse_traceparent

try:
    from opentelemetry import trace as otel
except ImportError:  # the otel extra is not installed: the header is copied, no spans
    otel = None  # type: ignore[assignment]

__all__ = ["OTEL", "outgoing", "record_outcome", "spans_on", "task_span"]

#: whether ``opentelemetry-api`` is importable
OTEL = otel is not None


def _otel_traceparent() -> str | None:
    ctx = otel.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return TraceParent(f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags)).value()


def outgoing() -> str | None:
    """The ``traceparent`` for a task record sent now (None: there is no trace to continue)."""
    if OTEL:
        active = _otel_traceparent()
        if active is not None:
            return active
    return current_traceparent()


@contextlib.contextmanager
def _span(
    task: bytes | None, parent: TraceParent | None, topic: str, partition: int, offset: int
) -> Iterator[str | None]:
    context = None
    if parent is not None:
        remote = otel.SpanContext(
            int(parent.trace_id, 16),
            int(parent.span_id, 16),
            is_remote=True,
            trace_flags=otel.TraceFlags(parent.flags),
        )
        context = otel.set_span_in_context(otel.NonRecordingSpan(remote))
    name = task.decode(errors="replace") if task is not None else "unknown"
    attributes: dict[str, str | int] = {
        "messaging.system": "kafka",
        "messaging.destination.name": topic,
        "messaging.destination.partition.id": str(partition),
        "messaging.kafka.offset": offset,
        "streamtasks.task": name,
    }
    with otel.get_tracer("streamtasks").start_as_current_span(
        f"run {name}", context=context, kind=otel.SpanKind.CONSUMER, attributes=attributes
    ):
        yield _otel_traceparent() or (parent.value() if parent is not None else None)


def spans_on() -> bool:
    """Whether :func:`task_span` makes real spans (OpenTelemetry with an SDK configured); when
    not, a worker skips it and :func:`record_outcome` and carries the record's header on."""
    if not OTEL:
        return False
    if _Provider.recording:
        return True
    # not yet: look again at most once a second (this runs for every task)
    return time.monotonic() >= _Provider.next_look and _Provider.configured()


def task_span(
    task: bytes | None, raw: bytes | str | None, topic: str, partition: int, offset: int
) -> contextlib.AbstractContextManager[str | None]:
    """Run a task inside this (see the module docstring); ``task``: its ``st-task`` header,
    ``raw``: its ``traceparent`` header, ``topic``/``partition``/``offset``: the record's."""
    if spans_on():
        parent = parse_traceparent(raw) if raw is not None else None
        return _span(task, parent, topic, partition, offset)
    return contextlib.nullcontext(checked_traceparent(raw) if raw is not None else None)


class _Provider:
    """Whether an OpenTelemetry SDK (a real tracer provider) is configured. With only the API
    every span would be a no-op that merely passes the parent on, which is what the
    no-OpenTelemetry path does at a fraction of the cost. A provider, once set, stays set;
    until then this looks again at most once a second (the lookup costs about a microsecond)."""

    recording = False
    next_look = 0.0

    @classmethod
    def configured(cls) -> bool:
        if cls.recording:
            return True
        now = time.monotonic()
        if now >= cls.next_look:  # a benign race between task threads: both look
            cls.recording = not isinstance(otel.get_tracer_provider(), otel.ProxyTracerProvider)
            cls.next_look = now + 1.0
        return cls.recording


def record_outcome(kind: str) -> None:
    """Inside :func:`task_span`: the task's outcome on its span (failures mark it an error)."""
    if not OTEL or not _Provider.recording:
        return  # no SDK: the current span is a no-op one
    span = otel.get_current_span()
    span.set_attribute("streamtasks.outcome", kind)
    if kind in ("failure", "retry", "dead"):
        span.set_status(otel.Status(otel.StatusCode.ERROR, kind))
