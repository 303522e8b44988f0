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

__all__ = ["TraceParent", "checked_traceparent", "parse_traceparent"]

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
    text = checked_traceparent(raw)
    if text is None:
        return None
    return TraceParent(text[3:35], text[36:52], int(text[53:55], 16))


def checked_traceparent(raw: bytes | str | None) -> str | None:
    """A valid ``traceparent`` value as version-00 text (what a record carries on), or None
    (missing or malformed, logged at debug level); cheaper than :func:`parse_traceparent`."""
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
    if match.group(2) == _ZERO_TRACE or match.group(3) == _ZERO_SPAN:
        log.debug("traceparent dropped: all-zero id", value=text[:80])
        return None
    return text if version == "00" else "00" + text[2:55]
