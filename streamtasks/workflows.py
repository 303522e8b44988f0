"""Workflows: chains (each step's result is the next one's first argument) and groups.

``task.s(*args, **kwargs)`` makes a signature; ``a.s(1) | b.s() | c.s()`` or
``chain(a.s(1), b.s(), c.s())`` a chain; ``group(a.s(1), a.s(2))`` a group.

Invariants:

* the continuation travels in the envelope (later steps as ``TaskSignature`` frames), so a
  chain needs no coordinator and survives any worker crash: the next step is produced as an
  output of the current one, and its offset is committed only after that is acknowledged;
* step ids are deterministic (``wf.{root}.{index}``), so a step that is re-produced after a
  crash is recognisably the same step and runs to completion at most once;
* a step that ends in failure writes that failure as the result of the chain's last step too,
  so whoever waits on the chain gets the error instead of waiting forever;
* types are checked at the seams: the arguments of every step when the chain is built, and
  the previous result against the next step's first parameter when it runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamtasks.envelope import Envelope
from streamtasks.errors import ArgumentError, SchemaError

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.asyncresult import AsyncResult
    from streamtasks.task import Task

__all__ = ["Chain", "Group", "GroupResult", "Signature", "chain", "group", "step_id"]


def step_id(root: str, index: int) -> str:
    return f"wf.{root}.{index}"


def parse_step_id(task_id: str) -> tuple[str, int] | None:
    if not task_id.startswith("wf."):
        return None
    root, _, index = task_id[3:].rpartition(".")
    return (root, int(index)) if root and index.isdigit() else None


@dataclass(frozen=True)
class Signature:
    """A task with its arguments, not yet sent (``task.s(...)``)."""

    task: Task[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __or__(self, other: Signature | Chain) -> Chain:
        return Chain((self,)) | other

    def apply_async(self) -> AsyncResult:
        return self.task.apply_async(self.args, self.kwargs)

    delay = apply_async


@dataclass(frozen=True)
class Chain:
    steps: tuple[Signature, ...]

    def __post_init__(self) -> None:
        if not self.steps:
            raise ArgumentError("a chain needs at least one step")
        apps = {id(s.task.app) for s in self.steps}
        if len(apps) != 1:
            raise ArgumentError("all steps of a chain must belong to one App")
        first = self.steps[0]
        first.task.signature.to_record(tuple(first.args), dict(first.kwargs))
        for later in self.steps[1:]:
            if later.task.partial_schema is None:
                raise SchemaError(later.task.partial_problem or "not usable as a later step")
            later.task.signature.to_partial_record(tuple(later.args), dict(later.kwargs))

    def __or__(self, other: Signature | Chain) -> Chain:
        more = other.steps if isinstance(other, Chain) else (other,)
        return Chain(self.steps + more)

    def apply_async(self, *, key: str | None = None) -> AsyncResult:
        """Send the first step; returns the handle of the last step (the chain's result)."""
        from streamtasks.asyncresult import AsyncResult

        first, rest = self.steps[0], self.steps[1:]
        app: App = first.task.app
        continuation = tuple(encode_step(app, s) for s in rest)
        root = uuid.uuid4().hex
        last_id = step_id(root, len(self.steps) - 1)
        app.results_listener().expect(last_id)
        env = Envelope(
            id=step_id(root, 0),
            task=first.task.name,
            queue=first.task.queue,
            args=first.task.encode_args(first.args, first.kwargs),
            root_id=root,
            workflow_id=root,
            continuation=continuation,
        )
        sent = app._publish_task(env, key=key, headers=[], task=first.task)
        return AsyncResult(last_id, app=app, task=self.steps[-1].task, delivery=sent._delivery)

    delay = apply_async


def chain(*steps: Signature | Chain) -> Chain:
    flat: list[Signature] = []
    for s in steps:
        flat.extend(s.steps if isinstance(s, Chain) else (s,))
    return Chain(tuple(flat))


@dataclass(frozen=True)
class GroupResult:
    results: tuple[AsyncResult, ...]

    def get(self, timeout: float | None = None) -> list[Any]:
        return [r.get(timeout=timeout) for r in self.results]

    def ready(self) -> bool:
        return all(r.ready() for r in self.results)

    def __len__(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class Group:
    members: tuple[Signature, ...]

    def apply_async(self) -> GroupResult:
        return GroupResult(tuple(m.apply_async() for m in self.members))

    delay = apply_async


def group(*members: Signature | Iterable[Signature]) -> Group:
    """``group(a.s(1), a.s(2))`` or ``group(a.s(i) for i in range(10))``."""
    flat: list[Signature] = []
    for m in members:
        flat.extend((m,) if isinstance(m, Signature) else m)
    return Group(tuple(flat))


def encode_step(app: App, sig: Signature) -> bytes:
    task = sig.task
    if task.partial_schema is None:
        raise SchemaError(task.partial_problem or f"task {task.name!r} cannot be a later step")
    partial = app.codec.encode(
        task.partial_schema, task.signature.to_partial_record(tuple(sig.args), dict(sig.kwargs))
    )
    return app.codec.encode(app.signature_schema, {"task": task.name, "partial": partial})
