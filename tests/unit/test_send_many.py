"""Task.send_many: the item convention and all-or-nothing validation (no broker needed)."""

from __future__ import annotations

import pytest

from streamtasks import App, ArgumentError
from streamtasks.errors import BrokerError


def _app() -> App:
    # 127.0.0.1:1 answers nothing: a test that reached the producer would fail differently
    return App("app", bootstrap_servers="127.0.0.1:1")


def test_a_bad_item_is_refused_with_its_index_before_anything_is_produced() -> None:
    # Given a task taking two ints
    app = _app()

    @app.task
    def add(x: int, y: int) -> int:
        return x + y

    # When the third item of a batch has a wrong type
    with pytest.raises(ArgumentError, match=r"item 2: .*parameter 'x': expected int, got str"):
        add.send_many([(1, 2), {"x": 3, "y": 4}, ("three", 4), (5, 6)])
    # Then no client was made: nothing of the batch was produced
    assert app._producer is None


def test_an_item_that_is_neither_a_tuple_nor_a_dict_is_refused_with_a_hint() -> None:
    app = _app()

    @app.task
    def one(x: int) -> int:
        return x

    with pytest.raises(ArgumentError, match=r"item 1: expected a tuple.*\(value,\)"):
        one.send_many([(1,), 2])  # type: ignore[list-item]
    assert app._producer is None


def test_a_record_over_the_payload_limit_is_refused_with_its_index() -> None:
    app = App("app", bootstrap_servers="127.0.0.1:1", max_payload_bytes=2048)

    @app.task
    def blob(data: bytes) -> int:
        return len(data)

    with pytest.raises(ArgumentError, match=r"item 1: .*over max_payload_bytes=2048"):
        blob.send_many([(b"x",), (b"x" * 4096,)])
    assert app._producer is None


def test_reserved_headers_and_bad_queue_names_are_refused_before_encoding() -> None:
    app = _app()

    @app.task
    def one(x: int) -> int:
        return x

    with pytest.raises(ArgumentError, match="reserved"):
        one.send_many([(1,)], headers={"st-task": "x"})
    with pytest.raises(ArgumentError, match="queue"):
        one.send_many([(1,)], queue="no spaces")
    assert app._producer is None


def test_an_empty_batch_returns_no_handles_and_makes_no_client() -> None:
    app = _app()

    @app.task
    def one(x: int) -> int:
        return x

    assert one.send_many([]) == []
    assert app._producer is None


def test_connect_to_an_address_where_no_broker_answers_fails_with_a_fix_it_message() -> None:
    app = _app()
    with pytest.raises(BrokerError, match=r"could not be reached.*STREAMTASKS_BOOTSTRAP_SERVERS"):
        app.connect(timeout=0.5)
