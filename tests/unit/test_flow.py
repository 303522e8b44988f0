"""PartitionFlow: a partition assigned back after it was lost while paused fetches again."""

from __future__ import annotations

from confluent_kafka import TopicPartition

from streamtasks.flow import PartitionFlow


class FakeConsumer:
    """Keeps pause state per partition across assignments, as librdkafka does."""

    def __init__(self) -> None:
        self.paused: set[tuple[str, int]] = set()

    def pause(self, parts: list[TopicPartition]) -> None:
        self.paused |= {(p.topic, p.partition) for p in parts}

    def resume(self, parts: list[TopicPartition]) -> None:
        self.paused -= {(p.topic, p.partition) for p in parts}

    def assignment(self) -> list[TopicPartition]:
        return []


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
