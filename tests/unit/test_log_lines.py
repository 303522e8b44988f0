"""Every log line is written whole, in one write: processes that share a log file (a
supervisor's children) must not interleave their lines (unbuffered stderr writes each
write() through at once)."""

from __future__ import annotations

import json
import sys

import pytest
import structlog

from streamtasks.logs import configure_logging


class _Recorder:
    def __init__(self) -> None:
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_a_json_log_line_is_one_write_ending_in_its_newline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = _Recorder()
    monkeypatch.setattr(sys, "stderr", recorder)
    configure_logging("json", "info")
    try:
        log = structlog.get_logger("test")
        log.info("partitions assigned", partitions=[f"t[{i}]" for i in range(50)])
        log.warning("second")
    finally:
        structlog.reset_defaults()
    assert len(recorder.writes) == 2
    for text in recorder.writes:
        assert text.endswith("\n") and text.count("\n") == 1
        json.loads(text)
