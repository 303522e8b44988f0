"""Task.send_many: the item convention and all-or-nothing validation (no broker needed)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamtasks import App, ArgumentError
from streamtasks.errors import BrokerError
from streamtasks.wire.envelope import Envelope, new_envelope_avro


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


@given(
    task_id=st.text(max_size=40),
    task=st.text(max_size=40),
    queue=st.text(max_size=40),
    args=st.binary(max_size=40),
    created=st.integers(0, 2**62),
    eta=st.none() | st.integers(0, 2**62),
    expires=st.none() | st.integers(0, 2**62),
)
def test_the_bulk_envelope_is_the_envelope_dataclass_s_avro_form(
    task_id: str,
    task: str,
    queue: str,
    args: bytes,
    created: int,
    eta: int | None,
    expires: int | None,
) -> None:
    # send_many builds envelopes as dicts: the same record send() writes through Envelope
    envelope = Envelope(
        id=task_id,
        task=task,
        queue=queue,
        args=args,
        created_at=created,
        eta=eta,
        expires=expires,
        root_id=task_id,
    )
    built = new_envelope_avro(task_id, task, queue, args, created, eta, expires)
    assert built == envelope.to_avro()
    assert list(built) == list(envelope.to_avro())  # same field order


def test_send_many_writes_the_records_send_would_write(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a task, and what the app would produce captured (no broker)
    app = _app()

    @app.task(queue="q")
    def add(x: int, y: int) -> int:
        return x + y

    sent: list[tuple[str, bytes, Any, Any]] = []
    idle = SimpleNamespace(
        poll=lambda _t: 0,
        produce=lambda topic, value, key, headers, on_delivery: sent.append(
            (topic, value, key, headers)
        ),
    )
    monkeypatch.setattr(App, "producer", property(lambda _self: idle))
    listener = SimpleNamespace(expect=lambda _id: None, expect_many=lambda _ids: None)
    monkeypatch.setattr(app, "results_listener", lambda **_kw: listener)
    # When one is sent alone and two in a batch (one with a countdown: the retry tier)
    add.send(1, 2)
    handles = add.send_many([(3, 4), {"x": 5, "y": 6}])
    later = add.send_many([(7, 8)], countdown=60)
    # Then the batch's records are send()'s, field for field but the id and times
    envs = [
        Envelope.from_avro(app.codec.decode(value, expect=app.envelope_schema)[1])
        for _, value, _, _ in sent
    ]
    one, *many = envs
    for env, handle in zip(many, [*handles, *later], strict=True):
        assert env.id == handle.id and env.root_id == env.id and len(env.id) == 32
        assert (env.task, env.queue, env.attempt) == (one.task, one.queue, one.attempt)
        assert (env.parent_id, env.workflow_id, env.continuation) == (None, None, ())
    assert [add.decode_args(e.args)[1] for e in envs] == [
        {"x": 1, "y": 2},
        {"x": 3, "y": 4},
        {"x": 5, "y": 6},
        {"x": 7, "y": 8},
    ]
    assert [t for t, *_ in sent[:3]] == ["streamtasks.tasks.q"] * 3
    assert sent[3][0].startswith("streamtasks.tasks.q.retry.")
    assert envs[3].eta is not None and envs[3].eta - envs[3].created_at == 60_000
    assert [dict(h)["st-id"] for *_, h in sent] == [e.id.encode() for e in envs]
