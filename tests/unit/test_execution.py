"""Executor outcomes for hostile or oversize input (no broker: outputs are only built)."""

from __future__ import annotations

from typing import Any, cast

import pytest

from streamtasks import App, TaskStatus
from streamtasks.wire.envelope import Envelope, ResultRecord
from streamtasks.wire.topics import dlq_topic, results_topic, task_topic
from streamtasks.worker.executor import Executor, Output, Record, header
from streamtasks.worker.indexes import FiredIndex
from streamtasks.worker.outcomes import result_refused


class _NoneFired:
    def add(self, task_id: str) -> None:
        pass

    def done(self, task_id: str, *, wait: float = 0) -> bool:
        return False


@pytest.fixture
def app() -> App:
    a = App("unit", bootstrap_servers="127.0.0.1:1", namespace="unit", max_payload_bytes=2048)

    @a.task(name="add")
    def add(x: int, y: int) -> int:
        return x + y

    @a.task(name="blob")
    def blob(n: int) -> str:
        return "x" * n

    return a


def _executor(app: App) -> Executor:
    return Executor(app, "w1", fired=cast(FiredIndex, _NoneFired()))


def _record(app: App, env: Envelope, topic: str | None = None) -> Record:
    value = app.codec.encode(app.envelope_schema, env.to_avro())
    return Record(topic or task_topic("unit", "default"), 0, 5, env.id.encode(), value, [])


def _result(app: App, out: Output) -> ResultRecord:
    return ResultRecord.from_avro(app.codec.decode(out.value, expect=app.result_schema)[1])


def test_a_corrupt_chord_join_frame_is_an_internal_error_dead_letter_with_a_dead_result(
    app: App,
) -> None:
    args = app.tasks["add"].encode_args((1, 2), {})
    frame = app.chord_join_schema.header + b"\xff corrupt"
    env = Envelope(id="t1", task="add", queue="default", args=args, continuation=(frame,))
    rec = _record(app, env)
    executor = _executor(app)
    with pytest.raises(Exception) as info:
        executor.run(rec)
    outcome = executor.outcomes.internal_error(rec, info.value)
    assert outcome.kind == "dead"
    (letter,) = outcome.outputs
    assert letter.topic == dlq_topic("unit", "default")
    assert header(letter.headers, "st-dlq-reason") == b"internal-error"
    assert b"Traceback" in (header(letter.headers, "st-traceback") or b"")
    (dead,) = outcome.then
    assert _result(app, dead).status is TaskStatus.DEAD


def test_dead_letters_go_to_the_dlq_of_the_source_topic_whatever_the_envelope_says(
    app: App,
) -> None:
    env = Envelope(id="t2", task="nobody", queue="bad queue/name", args=b"")
    outcome = _executor(app).run(_record(app, env, topic="unit.tasks.default.retry.2"))
    assert [o.topic for o in outcome.outputs] == [dlq_topic("unit", "default")]


def test_a_result_over_the_limit_is_a_failure_with_the_limit_and_size(app: App) -> None:
    args: Any = app.tasks["blob"].encode_args((5000,), {})
    outcome = _executor(app).run(
        _record(app, Envelope(id="t3", task="blob", queue="default", args=args))
    )
    assert outcome.kind == "failure"
    (out,) = outcome.outputs
    result = _result(app, out)
    assert result.status is TaskStatus.FAILURE and result.error is not None
    assert result.error.type == "ResultTooLargeError"
    assert "2048" in result.error.message


def test_a_result_the_broker_refuses_becomes_the_tasks_failure(app: App) -> None:
    executor = _executor(app)
    env = Envelope(id="t4", task="blob", queue="default", args=b"")
    big = executor.results.result_output(env, TaskStatus.SUCCESS, 1, b"x" * 1000, None)
    refused = result_refused(app, big, "Broker: Message size too large")
    assert refused is not None and refused.topic == results_topic("unit")
    result = _result(app, refused)
    assert result.status is TaskStatus.FAILURE and result.value is None
    assert result.error is not None and result.error.type == "ResultTooLargeError"
