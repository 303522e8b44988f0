"""``current_task()`` inside a task body: what the executor gives it, built only on demand."""

from __future__ import annotations

import asyncio

import pytest

from streamtasks import App, StreamtasksError, TaskContext, current_task
from streamtasks.wire.envelope import Envelope
from streamtasks.worker.executor import Executor, Record


@pytest.fixture
def app() -> App:
    return App("unit", bootstrap_servers="127.0.0.1:1", namespace="unit")


def _record(app: App, name: str, *args: object, task_id: str = "t-1") -> Record:
    task = app.tasks[name]
    env = Envelope(
        id=task_id,
        task=name,
        queue=task.queue,
        args=task.encode_args(args, {}),
        attempt=3,
        root_id="root-1",
        parent_id="parent-1",
    )
    value = app.codec.encode(app.envelope_schema, env.to_avro())
    return Record(task.topic, 4, 17, b"k", value, [("st-task", name.encode())])


def test_current_task_sees_its_own_record_and_envelope(app: App) -> None:
    seen: list[TaskContext] = []

    @app.task(name="who")
    def who(x: int) -> int:
        seen.append(current_task())
        seen.append(current_task())  # the same object on a second call
        return x

    outcome = Executor(app, "w-1").run(_record(app, "who", 5))
    assert outcome.kind == "success"
    ctx = seen[0]
    assert seen[1] is ctx
    assert (ctx.id, ctx.name, ctx.attempt, ctx.key) == ("t-1", "who", 3, b"k")
    assert (ctx.root_id, ctx.parent_id, ctx.worker_id) == ("root-1", "parent-1", "w-1")
    assert (ctx.topic, ctx.partition, ctx.offset) == (app.tasks["who"].topic, 4, 17)
    with pytest.raises(StreamtasksError, match="only available inside a running task"):
        current_task()  # reset after the task


def test_async_tasks_each_see_their_own(app: App) -> None:
    @app.task(name="awho")
    async def awho(x: int) -> str:
        await asyncio.sleep(0)
        return current_task().id

    executor = Executor(app, "w-1")

    async def both() -> list[object]:
        return list(
            await asyncio.gather(
                executor.run_async(_record(app, "awho", 1, task_id="a")),
                executor.run_async(_record(app, "awho", 2, task_id="b")),
            )
        )

    outcomes = asyncio.run(both())
    task = app.tasks["awho"]
    records = [app.codec.decode(o.outputs[0].value)[1] for o in outcomes]  # type: ignore[attr-defined]
    values = [task.decode_result(r["value"]) for r in records]
    assert values == ["a", "b"]  # interleaved at the await, each kept its own context
