"""worker/stopsignals.py: the first stop signal drains, the next forces; old handlers come back."""

from __future__ import annotations

import signal
import threading
from typing import Any

from streamtasks.worker.stopsignals import drain_then_force, on_stop_signals


def test_the_first_signal_drains_and_the_second_stops_at_once() -> None:
    calls: list[dict[str, Any]] = []
    handler = drain_then_force(lambda **kw: calls.append(kw))
    handler(signal.SIGTERM, None)
    handler(signal.SIGINT, None)
    handler(signal.SIGTERM, None)
    assert calls == [{}, {"force": True}, {"force": True}]


def test_handlers_are_installed_for_term_and_int_and_restored() -> None:
    # Given the handlers in place before
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

    def handler(_signum: int, _frame: object) -> None:
        return None

    # When installed (this test runs on the main thread)
    restore = on_stop_signals(handler)
    assert restore is not None
    try:
        assert signal.getsignal(signal.SIGTERM) is handler
        assert signal.getsignal(signal.SIGINT) is handler
    finally:
        restore()

    # Then restoring puts the old ones back
    assert {s: signal.getsignal(s) for s in before} == before


def test_off_the_main_thread_nothing_is_installed() -> None:
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(on_stop_signals(lambda *_: None)))
    thread.start()
    thread.join()
    assert got == [None]
