"""Structured logging setup: console (human) or JSON lines, via structlog.

Every log line about a task carries ``task_id``, ``topic``, ``partition`` and ``offset``; the
worker passes them explicitly, so the setup here only decides format and level.

librdkafka's own log lines are routed through structlog too (:func:`kafka_logger`, passed to
every client as its ``logger``), deduplicated: the first occurrence of a message is logged at
once, repeats within :data:`REPEAT_WINDOW` seconds are only counted and reported with the next
occurrence after it ("(repeated 195 times)"). A connection failure is said as "broker ADDRESS
unreachable: REASON", at warning level.
"""

from __future__ import annotations

import logging
import re
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import structlog

__all__ = [
    "REPEAT_WINDOW",
    "LogFormat",
    "brokers_reachable_again",
    "configure_logging",
    "kafka_logger",
    "unreachable_brokers",
]

#: Seconds during which a repeated librdkafka message is counted instead of logged.
REPEAT_WINDOW = 30.0

LogFormat = Literal["console", "json"]

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at write time (test runners swap it)."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(fmt: LogFormat = "console", level: str = "info") -> None:
    """Configure structlog for a streamtasks process (CLI commands call this once)."""
    lvl = _LEVELS.get(level.lower())
    if lvl is None:
        raise ValueError(f"unknown log level {level!r}; use one of {sorted(_LEVELS)}")
    renderer: structlog.typing.Processor
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        # one write() a line: processes sharing a log file (a supervisor's children) append
        # whole lines; print() wrote the newline apart, so unbuffered stderr
        # (PYTHONUNBUFFERED) interleaved two processes' lines into one
        logger_factory=structlog.WriteLoggerFactory(file=_CurrentStderr()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )


# "[thrd:127.0.0.1:9/bootstrap]: 127.0.0.1:9/bootstrap: Connect to ipv4#127.0.0.1:9 failed:
# Connection refused (after 0ms in state CONNECT)"
_THREAD = re.compile(r"^\[thrd:[^\]]*\]:\s*")
_BROKER = re.compile(
    r"^(?:[A-Za-z]+: )?(?P<broker>[^\s:/]+:\d+)(?:/[\w-]+)?:\s*(?P<text>.*)$", re.S
)
_CONNECT_FAILED = re.compile(r"^Connect to \S+ failed:\s*(?P<why>.*?)(?:\s*\(after .*\))?$")
_VARYING = re.compile(r"\(after \d+ms[^)]*\)|\d+ms|\d+")


_checking = threading.local()


@contextmanager
def reachability_check() -> Iterator[None]:
    """While this thread checks that a broker answers (and says so itself when none does),
    librdkafka's connection failures served on it are logged at debug level only: the check's
    own error is the one line a user sees."""
    _checking.active = True
    try:
        yield
    finally:
        _checking.active = False


class _KafkaLogRouter(logging.Handler):
    """Turns librdkafka log records into deduplicated structlog events."""

    def __init__(self, window: float = REPEAT_WINDOW) -> None:
        super().__init__(logging.DEBUG)
        self.window = window
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}  # key -> (logged at, repeats)
        self._guard = threading.Lock()
        self.down: dict[str, float] = {}  # broker address -> when a connection first failed

    def down_brokers(self) -> list[str]:
        """The brokers seen failing since the last reset, sorted."""
        with self._guard:
            return sorted(self.down)

    def reachable_again(self) -> None:
        """Forget the failures seen so far: the next one is said at once, not counted."""
        with self._guard:
            self.down.clear()
            self._seen = {k: v for k, v in self._seen.items() if "unreachable" not in k[1]}

    def emit(self, record: logging.LogRecord) -> None:
        try:
            fac, client, text = (str(a) for a in record.args)  # type: ignore[union-attr]
        except (TypeError, ValueError):
            fac, client, text = "", record.name, record.getMessage()
        text = _THREAD.sub("", text)
        broker = None
        m = _BROKER.match(text)
        if m is not None:
            broker, text = m.group("broker"), m.group("text")
        level = record.levelno
        down = _CONNECT_FAILED.match(text)
        if down is not None:
            event = f"broker {broker} unreachable: {down.group('why')}"
            level = logging.DEBUG if getattr(_checking, "active", False) else logging.WARNING
            with self._guard:
                self.down.setdefault(str(broker), time.monotonic())
        else:
            event = f"{broker}: {text}" if broker else text
        # timings and counters vary between repeats; the broker's address does not
        key = (fac, f"{broker} {_VARYING.sub('#', event.replace(str(broker), ''))}")
        now = time.monotonic()
        with self._guard:
            last = self._seen.get(key)
            if last is not None and now - last[0] < self.window:
                self._seen[key] = (last[0], last[1] + 1)
                return
            repeats = 0 if last is None else last[1]
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:
                self._seen.clear()
        if repeats:
            event = f"{event} (repeated {repeats}\u00d7)"
        fields = {"source": "librdkafka", "facility": fac, "client": client}
        # looked up per event (deduplicated, so rare): a logger cached at the first event would
        # keep the logging configuration of that moment
        log = structlog.get_logger("streamtasks.kafka")
        if level >= logging.ERROR:
            log.error(event, **fields)
        elif level >= logging.WARNING:
            log.warning(event, **fields)
        elif level >= logging.INFO:
            log.info(event, **fields)
        else:
            log.debug(event, **fields)


_KAFKA_LOGGER: logging.Logger | None = None
_KAFKA_LOGGER_GUARD = threading.Lock()
_ROUTER = _KafkaLogRouter()


def unreachable_brokers() -> list[str]:
    """Brokers some client of this process failed to connect to since the last
    :func:`brokers_reachable_again` (from librdkafka's logs; no network I/O)."""
    return _ROUTER.down_brokers()


def brokers_reachable_again() -> None:
    """The caller saw a broker answer again: forget the failures seen so far."""
    _ROUTER.reachable_again()


def kafka_logger() -> logging.Logger:
    """The stdlib logger handed to librdkafka clients (``logger`` config), which forwards
    to structlog through the deduplicating router; one per process."""
    global _KAFKA_LOGGER
    with _KAFKA_LOGGER_GUARD:
        if _KAFKA_LOGGER is None:
            logger = logging.getLogger("streamtasks.librdkafka")
            logger.setLevel(logging.DEBUG)
            logger.propagate = False
            logger.addHandler(_ROUTER)
            _KAFKA_LOGGER = logger
        return _KAFKA_LOGGER
