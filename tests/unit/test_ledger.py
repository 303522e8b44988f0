"""The sender's ledger: pending, acknowledged and failed records."""

from __future__ import annotations

from typing import Any

from streamtasks.kafka.ledger import Ledger, produce_batch


class _Err:
    def str(self) -> str:
        return "Local: Message timed out"


class _FakeProducer:
    """Takes two records, then reports its queue full once, then refuses with an error."""

    def __init__(self, refuse_at: int | None = None) -> None:
        self.callbacks: list[Any] = []
        self.refuse_at = refuse_at
        self.full_once = True

    def produce(self, topic: str, **kw: Any) -> None:
        if len(self.callbacks) == 2 and self.full_once:
            self.full_once = False
            raise BufferError
        if self.refuse_at is not None and len(self.callbacks) == self.refuse_at:
            raise RuntimeError("producer closed")
        self.callbacks.append(kw["on_delivery"])

    def poll(self, _timeout: float) -> int:
        return 0


def test_acknowledged_records_leave_and_failed_ones_are_reported_once() -> None:
    ledger = Ledger()
    first = ledger.enter(["task a", "task b", "task c"])
    ledger.report(first, None)
    ledger.report(first + 1, _Err())  # type: ignore[arg-type]
    assert ledger.pending() == ["task c"]
    assert ledger.take_failed() == [("task b", "Local: Message timed out")]
    assert ledger.take_failed() == []


def test_a_batch_waits_for_room_and_each_handle_gets_its_own_report() -> None:
    ledger, producer = Ledger(), _FakeProducer()
    records = [("t", b"v", f"k{i}", [], f"task {i}") for i in range(4)]
    deliveries = produce_batch(producer, ledger, records)  # type: ignore[arg-type]
    assert len(producer.callbacks) == 4 and ledger.pending() == [f"task {i}" for i in range(4)]
    producer.callbacks[1](_Err(), None)
    for cb in producer.callbacks[::2]:
        cb(None, None)
    assert [d.done for d in deliveries] == [True, True, True, False]
    assert deliveries[1].error == "Local: Message timed out" and deliveries[0].error is None
    assert ledger.pending() == ["task 3"]


def test_records_after_one_the_producer_refused_are_not_left_pending() -> None:
    ledger, producer = Ledger(), _FakeProducer(refuse_at=3)
    records = [("t", b"v", f"k{i}", [], f"task {i}") for i in range(5)]
    try:
        produce_batch(producer, ledger, records)  # type: ignore[arg-type]
    except RuntimeError:
        pass
    else:
        raise AssertionError("the refusal was not raised")
    assert ledger.pending() == ["task 0", "task 1", "task 2"]
