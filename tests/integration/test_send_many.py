"""Bulk sending and connecting ahead of the first send, on a real broker."""

from __future__ import annotations

import pytest

from streamtasks import App
from streamtasks.testing import consume_all
from tests.integration.conftest import run_burst_worker

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def test_send_many_enqueues_every_item_and_every_handle_resolves(
    app: App, kafka_bootstrap: str, ns: str
) -> None:
    # Given a connected app
    app.connect(timeout=15)
    add = app.tasks["add"]
    # When 300 tasks are sent in one batch, as tuples and as dicts
    items: list[tuple[int, int] | dict[str, int]] = [
        (i, 1) if i % 2 else {"x": i, "y": 1} for i in range(300)
    ]
    handles = add.send_many(items)
    # Then every one is acknowledged by the broker ...
    assert app.flush(30) == 0
    for h in handles:
        h.wait_delivery(10)
    # ... and, once a worker ran them, each handle returns its own item's value
    run_burst_worker(kafka_bootstrap, ns)
    assert [h.get(timeout=30) for h in handles] == [i + 1 for i in range(300)]


def test_send_many_with_one_key_puts_the_batch_in_one_partition_in_order(
    app: App, kafka_bootstrap: str
) -> None:
    add = app.tasks["add"]
    handles = add.send_many([(i, 0) for i in range(50)], key="one-customer")
    assert app.flush(30) == 0
    records = consume_all(kafka_bootstrap, add.topic, expect=50, timeout=30)
    assert len({r.partition() for r in records}) == 1
    ids = [dict(r.headers() or [])["st-id"].decode() for r in records]
    assert ids == [h.id for h in handles]
