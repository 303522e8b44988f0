"""kafka.reader.TopicTail on a fake consumer: partition ends noted, errors passed on."""

from __future__ import annotations

from typing import Any, cast

from streamtasks.kafka import Consumer, KafkaError
from streamtasks.kafka.reader import BEGINNING, TopicTail


class Msg:
    def __init__(self, partition: int, offset: int, error: KafkaError | None = None) -> None:
        self._p, self._o, self._e = partition, offset, error

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def error(self) -> KafkaError | None:
        return self._e


class FakeConsumer:
    """Hands out prepared batches: consume() the next one, poll() its first record."""

    def __init__(self, batches: list[list[Msg]]) -> None:
        self.batches = batches
        self.assigned: list[Any] = []
        self.polled: list[float] = []
        self.resumed: list[Any] = []

    def assign(self, parts: list[Any]) -> None:
        self.assigned = parts

    def resume(self, parts: list[Any]) -> None:
        self.resumed = parts

    def consume(self, _n: int, _timeout: float) -> list[Msg]:
        return self.batches.pop(0) if self.batches and self.batches[0] else []

    def poll(self, timeout: float) -> Msg | None:
        self.polled.append(timeout)
        if self.batches and not self.batches[0]:
            self.batches.pop(0)
        return None


def _eof(partition: int, offset: int) -> Msg:
    return Msg(partition, offset, KafkaError(KafkaError._PARTITION_EOF))


def test_the_tail_is_caught_up_once_every_partition_reached_its_end() -> None:
    # Given two partitions: one ends after a record, the other has a record after its end
    fake = FakeConsumer([[Msg(0, 0), _eof(0, 1), Msg(1, 5)], [], [_eof(1, 6), Msg(1, 6)]])
    errors: list[KafkaError] = []
    tail = TopicTail(cast(Consumer, fake), "t", on_error=errors.append)
    tail.start({0: BEGINNING, 1: 5})
    assert [(p.partition, p.offset) for p in fake.assigned] == [(0, BEGINNING), (1, 5)]

    # When it takes batches
    first = tail.take(0.1)
    assert [m.offset() for m in first] == [0, 5]
    assert tail.behind == [1] and not tail.caught_up
    assert tail.take(0.25) == [] and fake.polled == [0.25]  # nothing ready: waits in poll()

    # Then the end of partition 1 catches it up, and the later record is still returned
    assert [m.offset() for m in tail.take(0.1)] == [6]
    assert tail.caught_up and errors == []


def test_other_errors_go_to_on_error_and_are_not_records() -> None:
    broken = KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)
    fake = FakeConsumer([[Msg(0, 0, broken), Msg(0, 1)]])
    errors: list[KafkaError] = []
    tail = TopicTail(cast(Consumer, fake), "t", on_error=errors.append)
    tail.start({0: BEGINNING})
    assert [m.offset() for m in tail.take(0.1)] == [1]
    assert [e.code() for e in errors] == [KafkaError.UNKNOWN_TOPIC_OR_PART]
    assert tail.behind == [0]
