"""Workflows: chains, groups, chords and error callbacks.

``task.s(*args, **kwargs)`` makes a signature; ``a.s(1) | b.s() | c.s()`` or
``chain(a.s(1), b.s(), c.s())`` a chain (each step's result is the next one's first
argument); ``group(a.s(1), a.s(2))`` a group; ``chord(group(...), total.s())`` (or
``group(...) | total.s()``) a chord: the callback runs once, with the list of all member
results as its first argument; ``sig.on_error(handler.s())`` / ``apply_async(link_error=...)``
sends ``handler`` with a :class:`TaskFailure` as its first argument when the task fails.

Invariants:

* the continuation travels in the envelope (later steps as ``TaskSignature`` frames), so a
  chain needs no coordinator and survives any worker crash: the next step is produced as an
  output of the current one, and its offset is committed only after that is acknowledged;
* step ids are deterministic (``wf.{root}.{index}``), so a step that is re-produced after a
  crash is recognisably the same step and runs to completion at most once;
* a step that ends in failure writes that failure as the result of the chain's last step too,
  so whoever waits on the chain gets the error instead of waiting forever;
* types are checked at the seams: the arguments of every later step when the chain is built
  (the first step's when it is sent), and the previous result against the next step's first
  parameter when it runs;
* a chord has no coordinator either: each member's final outcome is one of its outputs, a
  record on ``{ns}.chords`` keyed by the chord id (see :mod:`streamtasks.worker.chords`); the worker
  owning that partition joins them and commits them only once the callback (or the chord's
  failure) is acknowledged, so the join state is the topic itself and survives any crash;
* error callbacks travel in the envelope (``link_error``), are inherited by later chain steps,
  and get deterministic ids (``err.{task id}.{n}``), so a re-produced one runs at most once.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from streamtasks.asyncresult import AsyncResult
from streamtasks.errors import ArgumentError, SchemaError
from streamtasks.wire.envelope import Envelope
from streamtasks.wire.headers import HeaderList, user_headers
from streamtasks.wire.ids import chord_marker_id, errback_id, member_id, parse_step_id, step_id
from streamtasks.wire.records import ChordJoin, TaskFailure

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.kafka.delivery import Delivery
    from streamtasks.task import Task

__all__ = [
    "Chain",
    "Chord",
    "Group",
    "GroupResult",
    "Signature",
    "TaskFailure",
    "chain",
    "chord",
    "chord_marker_id",
    "errback_id",
    "group",
    "member_id",
    "parse_step_id",
    "step_id",
]


_SAMPLE_FAILURE = TaskFailure("id", "task", "FAILURE", "Error", "message", None, 1)


@dataclass(frozen=True)
class Signature:
    """A task with its arguments, not yet sent (``task.s(...)``)."""

    task: Task[..., Any]
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    link_error: tuple[Signature, ...] = ()

    def __or__(self, other: Signature | Chain) -> Chain:
        return Chain((self,)) | other

    def on_error(self, errback: Signature) -> Signature:
        """This signature, with ``errback`` sent (a :class:`TaskFailure` first) if it fails."""
        check_errback(errback)
        return dataclasses.replace(self, link_error=(*self.link_error, errback))

    def apply_async(self) -> AsyncResult:
        return self.task.apply_async(self.args, self.kwargs, link_error=self.link_error)

    delay = apply_async


@dataclass(frozen=True)
class Chain:
    steps: tuple[Signature, ...]
    link_error: tuple[Signature, ...] = ()
    #: the first step, too, gets its first argument from before (a chord's body)
    fed: bool = False

    def __post_init__(self) -> None:
        if not self.steps:
            raise ArgumentError("a chain needs at least one step")
        apps = {id(s.task.app) for s in self.steps}
        if len(apps) != 1:
            raise ArgumentError("all steps of a chain must belong to one App")
        # The first step's own arguments are checked when it is sent (it may still become the
        # body of a chord, whose first argument the chord supplies); later steps' now.
        first = self.steps[0]
        for later in self.steps[int(not self.fed) :]:
            if later.task.partial_schema is None:
                raise SchemaError(later.task.partial_problem or "not usable as a later step")
            later.task.signature.to_partial_record(tuple(later.args), dict(later.kwargs))
            if later.link_error and later is not first:
                raise ArgumentError(
                    f"chain step {later.task.name!r} has its own link_error: error callbacks "
                    "attach to a chain's first step or to the whole chain (chain.on_error(...)), "
                    "and every later step inherits them"
                )

    def __or__(self, other: Signature | Chain) -> Chain:
        more = other.steps if isinstance(other, Chain) else (other,)
        extra = other.link_error if isinstance(other, Chain) else ()
        return Chain(self.steps + more, self.link_error + extra, self.fed)

    def on_error(self, errback: Signature) -> Chain:
        """Send ``errback`` (a :class:`TaskFailure` first) if any step of the chain fails."""
        check_errback(errback)
        return dataclasses.replace(self, link_error=(*self.link_error, errback))

    def apply_async(
        self, *, key: str | None = None, headers: Mapping[str, str | bytes] | None = None
    ) -> AsyncResult:
        """Send the first step; returns the handle of the last step (the chain's result).
        ``headers``: the sender's own, on the first step (a ``traceparent`` goes on to the
        later steps)."""
        app: App = self.steps[0].task.app
        extra = user_headers(headers)
        root = uuid.uuid4().hex
        last_id = step_id(root, len(self.steps) - 1)
        app.results_listener().expect(last_id)
        delivery = self.publish(root, key=key, headers=extra)
        return AsyncResult(last_id, app=app, task=self.steps[-1].task, delivery=delivery)

    def publish(
        self, root: str, *, key: str | None = None, headers: HeaderList | None = None
    ) -> Delivery:
        """Send the first step as workflow ``root`` (its steps get ids derived from it)."""
        first, rest = self.steps[0], self.steps[1:]
        app: App = first.task.app
        env = Envelope(
            id=step_id(root, 0),
            task=first.task.name,
            queue=first.task.queue,
            args=first.task.encode_args(first.args, first.kwargs),
            root_id=root,
            workflow_id=root,
            continuation=tuple(encode_step(app, s) for s in rest),
            link_error=encode_errbacks(app, (*first.link_error, *self.link_error)),
        )
        return app.publisher.publish(env, key=key, headers=headers or [])

    delay = apply_async


def chain(*steps: Signature | Chain) -> Chain:
    flat: list[Signature] = []
    errbacks: list[Signature] = []
    for s in steps:
        flat.extend(s.steps if isinstance(s, Chain) else (s,))
        if isinstance(s, Chain):
            errbacks.extend(s.link_error)
    return Chain(tuple(flat), tuple(errbacks))


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

    def __or__(self, body: Signature | Chain) -> Chord:
        """``group(...) | callback.s()`` is ``chord(group(...), callback.s())``."""
        return chord(self, body)


@dataclass(frozen=True)
class Chord:
    """A group whose results, once all have succeeded, are the callback's first argument.

    The callback (the first step of ``body``; later steps chain on) runs exactly once to
    completion, after every member ended: with the member results in member order when all
    succeeded; not at all when one failed — then the chord's result (the body's last step) is a
    FAILURE with a ``ChordError`` naming the member, and the chord's error callbacks are sent.
    """

    header: Group
    body: Chain
    link_error: tuple[Signature, ...] = ()

    def __post_init__(self) -> None:
        app_ids = {id(m.task.app) for m in self.header.members} | {id(self.body.steps[0].task.app)}
        if len(app_ids) != 1:
            raise ArgumentError("all tasks of a chord must belong to one App")
        for m in self.header.members:
            m.task.signature.to_record(tuple(m.args), dict(m.kwargs))
        callback = self.body.steps[0]
        task = callback.task
        if task.partial_schema is None:
            raise SchemaError(task.partial_problem or f"{task.name!r} cannot be a chord callback")
        partial = task.signature.to_partial_record(tuple(callback.args), dict(callback.kwargs))
        try:
            task.signature.complete(partial, [])
        except ArgumentError as exc:
            raise ArgumentError(
                f"chord callback {task.name!r}: its first parameter receives the list of the "
                f"members' results, so it must be a list (e.g. list[int]): {exc}"
            ) from None

    def on_error(self, errback: Signature) -> Chord:
        """Send ``errback`` (a :class:`TaskFailure` first) if the chord or its body fails."""
        check_errback(errback)
        return Chord(self.header, self.body, (*self.link_error, errback))

    def apply_async(self) -> AsyncResult:
        """Send every member; returns the handle of the body's last step (the chord's result)."""
        callback, rest = self.body.steps[0], self.body.steps[1:]
        app: App = callback.task.app
        root = uuid.uuid4().hex
        last = step_id(root, len(self.body.steps) - 1)
        app.results_listener().expect(last)
        errbacks = encode_errbacks(
            app, (*self.link_error, *callback.link_error, *self.body.link_error)
        )
        members = self.header.members
        if not members:  # nothing to wait for: the callback gets an empty list now
            first = Signature(
                callback.task, ([], *callback.args), callback.kwargs, callback.link_error
            )
            sent = Chain((first, *rest), (*self.link_error, *self.body.link_error)).publish(root)
            return AsyncResult(last, app=app, task=self.body.steps[-1].task, delivery=sent)
        body = encode_step(app, callback)
        continuation = tuple(encode_step(app, s) for s in rest)
        delivery = None
        for index, m in enumerate(members):
            join = ChordJoin(root, index, len(members), body, continuation, tuple(errbacks))
            env = Envelope(
                id=member_id(root, index),
                task=m.task.name,
                queue=m.task.queue,
                args=m.task.encode_args(m.args, m.kwargs),
                root_id=root,
                workflow_id=root,
                continuation=(app.codec.encode(app.chord_join_schema, join.to_avro()),),
                link_error=encode_errbacks(app, m.link_error),
            )
            delivery = app.publisher.publish(env, key=None, headers=[])
        return AsyncResult(last, app=app, task=self.body.steps[-1].task, delivery=delivery)

    delay = apply_async


class _ChordHeader:
    """``chord(header)(body)``: Celery's spelling; sends at once."""

    def __init__(self, header: Group) -> None:
        self.header = header

    def __call__(self, body: Signature | Chain) -> AsyncResult:
        return chord(self.header, body).apply_async()


@overload
def chord(header: Group | Iterable[Signature], body: Signature | Chain) -> Chord: ...
@overload
def chord(header: Group | Iterable[Signature], body: None = None) -> _ChordHeader: ...
def chord(
    header: Group | Iterable[Signature], body: Signature | Chain | None = None
) -> Chord | _ChordHeader:
    """``chord(group(a.s(1), a.s(2)), total.s())``: ``total([a(1), a(2)])`` once both ran."""
    members = header if isinstance(header, Group) else group(header)
    if body is None:
        return _ChordHeader(members)
    steps = body.steps if isinstance(body, Chain) else (body,)
    errbacks = body.link_error if isinstance(body, Chain) else ()
    return Chord(members, Chain(steps, errbacks, fed=True))


def group(*members: Signature | Iterable[Signature]) -> Group:
    """``group(a.s(1), a.s(2))`` or ``group(a.s(i) for i in range(10))``."""
    flat: list[Signature] = []
    for m in members:
        flat.extend((m,) if isinstance(m, Signature) else m)
    return Group(tuple(flat))


def check_errback(errback: Signature) -> None:
    """An error callback must take a :class:`TaskFailure` as its first parameter."""
    task = errback.task
    if task.partial_schema is None:
        raise SchemaError(task.partial_problem or f"{task.name!r} cannot be an error callback")
    partial = task.signature.to_partial_record(tuple(errback.args), dict(errback.kwargs))
    try:
        task.signature.complete(partial, _SAMPLE_FAILURE)
    except ArgumentError as exc:
        raise ArgumentError(
            f"error callback {task.name!r}: its first parameter receives a "
            f"streamtasks.workflows.TaskFailure, so annotate it with that type: {exc}"
        ) from None


def encode_errbacks(app: App, errbacks: Iterable[Signature]) -> tuple[bytes, ...]:
    out = []
    for e in errbacks:
        check_errback(e)
        out.append(encode_step(app, e))
    return tuple(out)


def encode_step(app: App, sig: Signature) -> bytes:
    task = sig.task
    if task.partial_schema is None:
        raise SchemaError(task.partial_problem or f"task {task.name!r} cannot be a later step")
    partial = app.codec.encode(
        task.partial_schema, task.signature.to_partial_record(tuple(sig.args), dict(sig.kwargs))
    )
    return app.codec.encode(app.signature_schema, {"task": task.name, "partial": partial})
