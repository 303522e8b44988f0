"""PartitionFlow against a fake consumer: pauses and resumes per reason, across rebalances."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from streamtasks.worker.flow import PartitionFlow


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
