"""W3C Trace Context ``traceparent`` values: parse and format, nothing else.

``traceparent`` is ``{version}-{trace id}-{parent span id}-{flags}`` in lowercase hex
(``00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01``). A value that breaks the rules
(wrong lengths, upper case, all-zero ids, version ``ff``) is not a trace context: callers drop
it (:func:`parse_traceparent` returns None and logs at debug level) and the task runs as if it
had none — a bad header never fails a task. Versions above ``00`` are read by their first four
fields, as the specification asks.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import structlog

__all__ = ["TraceParent", "parse_traceparent"]

log = structlog.get_logger("streamtasks.tracing")

_FORMAT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")
_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid trace context: which trace, which span is the parent, sampled or not."""

    trace_id: str  # 32 lowercase hex digits, not all zero
    span_id: str  # 16 lowercase hex digits, not all zero
    flags: int = 1  # bit 0: sampled

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def value(self) -> str:
        """The header value (version 00)."""
        return f"00-{self.trace_id}-{self.span_id}-{self.flags:02x}"


def parse_traceparent(raw: bytes | str | None) -> TraceParent | None:
    """The trace context in a ``traceparent`` header value, or None (missing or malformed)."""
    if raw is None:
        return None
    try:
        text = raw.decode("ascii") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        log.debug("traceparent dropped: not ASCII", value=repr(raw[:80]))
        return None
    match = _FORMAT.match(text)
    version = match.group(1) if match else ""
    well_formed = match is not None and (
        len(text) == 55 if version == "00" else len(text) == 55 or text[55:56] == "-"
    )
    if match is None or not well_formed or version == "ff":
        log.debug("traceparent dropped: malformed", value=text[:80])
        return None
    trace_id, span_id = match.group(2), match.group(3)
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        log.debug("traceparent dropped: all-zero id", value=text[:80])
        return None
    return TraceParent(trace_id, span_id, int(match.group(4), 16))
