"""A client's result listener keeps at most ``result_capacity`` ids and results in memory; a
handle it forgot still resolves, looked up from the results topic (real broker)."""

from __future__ import annotations

import threading

import pytest

from streamtasks import App
from tests.integration.apps.basic import build
from tests.integration.conftest import run_burst_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_handles_evicted_beyond_a_tiny_capacity_still_resolve_from_the_topic(
    kafka_bootstrap: str, ns: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a client whose listener remembers only 5 tasks
    monkeypatch.setenv("STREAMTASKS_RESULT_CAPACITY", "5")
    app: App = build(namespace=ns, bootstrap_servers=kafka_bootstrap)
    app.apply_topics()
    try:
        app.connect(timeout=15)
        add = app.tasks["add"]
        # and one handle already waiting, which will be forgotten while it waits
        first = add.send(100, 1)
        got: list[int] = []
        waiter = threading.Thread(target=lambda: got.append(first.get(timeout=60)))
        waiter.start()
        # When 40 more tasks are sent and run (8 times the capacity)
        handles = add.send_many([(i, 1) for i in range(40)])
        assert app.flush(30) == 0
        run_burst_worker(kafka_bootstrap, ns)
        # Then every handle resolves to its own value, the forgotten ones by a lookup
        assert [h.get(timeout=30) for h in handles] == [i + 1 for i in range(40)]
        waiter.join(60)
        assert got == [101]
        listener = app.results_listener()
        assert listener.lookups >= 35
        # and the listener's memory stayed within its bound
        assert len(listener._latest) <= 5 and len(listener._expected) <= 5
        # and the status of a forgotten handle is its real state, not PENDING
        assert handles[0].status.value == "SUCCESS"
    finally:
        app.close()
