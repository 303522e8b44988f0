"""PartitionFlow against a fake consumer: pauses and resumes per reason, across rebalances."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from streamtasks.worker.flow import PartitionFlow
from streamtasks.worker.session import MAX_RETRY_REST_S, retry_rest


class FakeConsumer:
    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()
        self.parts: list[TopicPartition] = []

    def pause(self, parts: list[TopicPartition]) -> None:
        self.paused |= {(p.topic, p.partition) for p in parts}

    def resume(self, parts: list[TopicPartition]) -> None:
        self.paused -= {(p.topic, p.partition) for p in parts}

    def seek(self, part: TopicPartition) -> None:
        pass

    def assignment(self) -> list[TopicPartition]:
        return self.parts


def test_a_partition_held_before_a_rebalance_is_resumed_when_assigned_again() -> None:
    # Given a tier partition held (paused) until a due time
    consumer = FakeConsumer()
    flow = PartitionFlow(consumer, max_in_flight=10, per_partition=5)  # type: ignore[arg-type]
    tp = ("ns.tasks.default.retry.1", 0)
    flow.hold(tp, 7, due_ms=10**15)
    assert tp in consumer.paused
    # When it is revoked (the hold forgotten) and assigned back; the client kept it paused
    flow.forget(tp)
    flow.assigned([TopicPartition(*tp)])
    flow.settle()
    # Then it fetches again
    assert tp not in consumer.paused


def test_settle_leaves_paused_what_a_reason_holds_since_the_assignment() -> None:
    consumer = FakeConsumer()
    flow = PartitionFlow(consumer, max_in_flight=10, per_partition=5)  # type: ignore[arg-type]
    held, hot = ("t.retry.1", 0), ("t", 1)
    flow.assigned([TopicPartition(*held), TopicPartition(*hot)])
    flow.hold(held, 3, due_ms=10**15)
    flow.received(hot, unfinished=5)
    flow.settle()
    assert consumer.paused == {held, hot}


def test_a_partition_assigned_while_the_window_is_full_stays_paused_until_it_drains() -> None:
    consumer = FakeConsumer()
    flow = PartitionFlow(consumer, max_in_flight=10, per_partition=5)  # type: ignore[arg-type]
    flow.pause_all()
    tp = ("t", 2)
    consumer.parts = [TopicPartition(*tp)]
    flow.assigned(consumer.parts)
    flow.settle()
    assert tp in consumer.paused
    flow.window(0)
    assert tp not in consumer.paused


def test_a_hot_partition_lost_and_assigned_back_is_resumed() -> None:
    # Given a partition paused as hot
    consumer = FakeConsumer()
    flow = PartitionFlow(consumer, max_in_flight=8, per_partition=2)  # type: ignore[arg-type]
    flow.received(("t", 0), unfinished=2)
    assert ("t", 0) in consumer.paused
    # When it is lost (its work forgotten) and assigned back
    flow.forget(("t", 0))
    flow.assigned([TopicPartition("t", 0)])
    # Then it fetches again
    assert ("t", 0) not in consumer.paused


def test_while_everything_is_paused_a_new_partition_is_paused_too() -> None:
    consumer = FakeConsumer()
    flow = PartitionFlow(consumer, max_in_flight=8, per_partition=2)  # type: ignore[arg-type]
    flow.pause_all()
    flow.assigned([TopicPartition("t", 1)])
    assert ("t", 1) in consumer.paused


# -- resting: idle retry-tier partitions sit out a while ------------------------------------
TIER, TASKS = "ns.tasks.default.retry.1", "ns.tasks.default"
REST, AWAKE = 0.25, 0.07


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _resting_flow(**kw: int) -> tuple[FakeConsumer, PartitionFlow, Clock]:
    consumer, clock = FakeConsumer(), Clock()
    flow = PartitionFlow(
        consumer,  # type: ignore[arg-type]
        max_in_flight=kw.get("max_in_flight", 10),
        per_partition=kw.get("per_partition", 5),
        rest_topics=[TIER],
        rest_s=REST,
        awake_s=AWAKE,
        clock=clock,
    )
    consumer.parts = [TopicPartition(TIER, 0), TopicPartition(TIER, 1), TopicPartition(TASKS, 0)]
    flow.assigned(consumer.parts)
    flow.settle()
    return consumer, flow, clock


def test_an_idle_tier_partition_rests_and_fetches_again_after_the_rest() -> None:
    consumer, flow, clock = _resting_flow()
    flow.rest()  # just assigned: not idle yet
    assert consumer.paused == set()
    clock.now += AWAKE + 0.01
    flow.rest()
    # the tier partitions rest; the task topic's never does
    assert consumer.paused == {(TIER, 0), (TIER, 1)}
    assert flow.resting() == {(TIER, 0), (TIER, 1)}
    clock.now += AWAKE + REST + 0.02
    flow.rest()
    assert consumer.paused == set() and flow.resting() == frozenset()
    # and, idle again for a while, they rest again
    clock.now += AWAKE + 0.01
    flow.rest()
    assert consumer.paused == {(TIER, 0), (TIER, 1)}


def test_a_tier_partition_that_receives_records_stays_awake() -> None:
    consumer, flow, clock = _resting_flow()
    clock.now += AWAKE - 0.02
    flow.received((TIER, 0), unfinished=1)
    clock.now += 0.03
    flow.rest()  # (TIER, 1) idle since assigned, (TIER, 0) received 0.03 s ago
    assert consumer.paused == {(TIER, 1)}


def test_a_record_from_a_partition_just_put_to_rest_wakes_it() -> None:
    consumer, flow, clock = _resting_flow()
    clock.now += AWAKE + 0.01
    flow.rest()
    assert (TIER, 0) in consumer.paused
    # fetched before the pause took effect: activity, so it fetches again at once
    flow.received((TIER, 0), unfinished=1)
    assert (TIER, 0) not in consumer.paused and (TIER, 0) not in flow.resting()


def test_no_other_reason_resumes_a_resting_partition_early() -> None:
    consumer, flow, clock = _resting_flow(max_in_flight=4, per_partition=2)
    clock.now += AWAKE + 0.01
    flow.rest()
    # the whole window fills, pauses everything, drains and resumes everything
    flow.pause_all()
    flow.window(0)
    assert consumer.paused == {(TIER, 0), (TIER, 1)}
    # a re-assignment of the task partition settles without touching the resting ones
    flow.assigned([TopicPartition(TASKS, 0)])
    flow.settle()
    assert consumer.paused == {(TIER, 0), (TIER, 1)}


def test_a_held_or_hot_partition_does_not_rest_and_stays_paused_for_its_reason() -> None:
    consumer, flow, clock = _resting_flow()
    flow.hold((TIER, 0), 3, due_ms=10**15)
    clock.now += AWAKE + 0.01
    flow.rest()
    assert flow.resting() == {(TIER, 1)}
    # the rest of the other one ends; the held one is still held
    clock.now += AWAKE + REST + 0.02
    flow.rest()
    assert consumer.paused == {(TIER, 0)}
    # released, it fetches and counts as awake from then on
    flow.release_due(10**16)
    assert consumer.paused == set()


def test_a_resting_partition_revoked_and_assigned_back_fetches_at_once() -> None:
    consumer, flow, clock = _resting_flow()
    clock.now += AWAKE + 0.01
    flow.rest()
    assert (TIER, 0) in consumer.paused
    # librdkafka keeps the pause across the rebalance
    flow.forget((TIER, 0))
    flow.assigned([TopicPartition(TIER, 0)])
    assert (TIER, 0) not in consumer.paused and (TIER, 0) not in flow.resting()


def test_while_everything_is_paused_nothing_is_put_to_rest() -> None:
    consumer, flow, clock = _resting_flow()
    flow.pause_all()
    clock.now += AWAKE + 0.01
    flow.rest()
    assert flow.resting() == frozenset()
    flow.window(0)
    assert consumer.paused == set()


def test_resting_is_off_where_it_would_not_pay() -> None:
    # a rest no longer than the awake time (a long fetch wait, or very short tiers)
    consumer, clock = FakeConsumer(), Clock()
    flow = PartitionFlow(
        consumer,  # type: ignore[arg-type]
        max_in_flight=10,
        per_partition=5,
        rest_topics=[TIER],
        rest_s=0.5,
        awake_s=1.05,
        clock=clock,
    )
    flow.assigned([TopicPartition(TIER, 0)])
    clock.now += 60
    flow.rest()
    assert consumer.paused == set()


def test_the_rest_is_a_quarter_of_the_shortest_tier_at_most_a_second() -> None:
    assert retry_rest((1.0, 2.0, 5.0), {"fetch.wait.max.ms": 10}) == (0.25, 0.07)
    rest, awake = retry_rest((5.0, 30.0), {})  # librdkafka's default fetch wait: 500 ms
    assert rest == MAX_RETRY_REST_S == 1.0 and awake == pytest.approx(1.05)
    assert retry_rest((0.1,), {"fetch.wait.max.ms": "10"}) == (0.025, 0.07)
