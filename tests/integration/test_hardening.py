"""Regression tests for issue 11: nothing hostile stops a partition or a worker.

Each test reproduces one defect found by hostile-input and churn runs: a retry held across a
rebalance, a malformed tier header, an unexpected error on a task thread, dead letters routed
by record content, and records over the size limits.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from streamtasks import App
from streamtasks.testing import consume_all
from streamtasks.topics import dlq_topic, retry_topic, task_topic
from tests.integration.conftest import StartWorkers

pytestmark = pytest.mark.integration


def _headers(msg: Message) -> dict[str, bytes]:
    return dict(msg.headers() or [])  # type: ignore[arg-type]


def test_a_retry_held_in_a_tier_runs_after_a_rebalance_gives_its_partition_back(
    app: App, start_workers: StartWorkers
) -> None:
    # Given one worker holding 12 delayed tasks in a retry tier (its tier partitions paused)
    (first,) = start_workers(1)
    countdown = 15.0
    sent = time.monotonic()
    handles = [app.tasks["add"].apply_async((i, i), countdown=countdown) for i in range(12)]
    app.flush()
    # When a second worker joins, so the first one's partitions are revoked and half of them
    # assigned back to it while its holds are pending
    start_workers(1)
    assert time.monotonic() - sent < countdown - 2, "rebalanced after the tasks were due"
    # Then every held task still runs once it is due
    assert [h.get(timeout=countdown + 30) for h in handles] == [2 * i for i in range(12)]
    assert first.is_alive()
