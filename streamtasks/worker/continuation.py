"""Workflow continuation: what a finished task sends on — chain steps, chord members' outcomes
for the join, the end of a chain that failed, and error callbacks.

A task's envelope carries its continuation (the frames of the steps after it; a chord member's
first frame is the chord's join) and its error callbacks. This module turns those frames into
the outputs a task's outcome includes. No Kafka client, no worker state.

Invariants: every id it writes is deterministic (:func:`streamtasks.wire.ids.step_id`,
:func:`~streamtasks.wire.ids.errback_id`), so a re-produced copy is recognisable; an error
callback whose frame does not decode is logged and dropped, never an exception for the record.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

import structlog

from streamtasks.errors import StreamtasksError, UnknownTaskError
from streamtasks.wire import headers as hdr
from streamtasks.wire.envelope import Envelope, ErrorInfo, TaskStatus, now_ms
from streamtasks.wire.headers import task_headers
from streamtasks.wire.ids import errback_id, parse_step_id, step_id
from streamtasks.wire.records import ChordJoin, ChordMember, TaskFailure
from streamtasks.wire.topics import Headers, chords_topic, task_topic
from streamtasks.worker.outcomes import Output, Results

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.task import Task

__all__ = ["Continuation"]

log = structlog.get_logger("streamtasks.worker")


class Continuation:
    """Builds the follow-on outputs of workflow tasks for one worker."""

    def __init__(self, app: App, results: Results) -> None:
        self.app = app
        self._results = results
        self._ns = app.settings.namespace

    def is_join(self, frame: bytes) -> bool:
        """Is this continuation frame a chord join (else: a chain step)?"""
        return frame[2:10] == self.app.chord_join_schema.fingerprint

    def decode_step(self, frame: bytes) -> tuple[Task[..., Any], dict[str, Any]]:
        """A TaskSignature frame: the task and its partial argument record."""
        app = self.app
        _, sig = app.codec.decode(frame, expect=app.signature_schema)
        task = app.tasks.get(sig["task"])
        if task is None or task.partial_schema is None:
            raise UnknownTaskError(f"workflow task {sig['task']!r} is not a usable task here")
        _, partial = app.codec.decode(sig["partial"], expect=task.partial_schema)
        return task, partial

    def next_step(self, env: Envelope, value: object) -> Output:
        task, partial = self.decode_step(env.continuation[0])
        args = self.app.codec.encode(task.args_schema, task.signature.complete(partial, value))
        root, index = parse_step_id(env.id) or (env.root_id or env.id, 0)
        nxt = Envelope(
            id=step_id(root, index + 1),
            task=task.name,
            queue=task.queue,
            args=args,
            root_id=root,
            parent_id=env.id,
            workflow_id=env.workflow_id,
            continuation=env.continuation[1:],
            link_error=env.link_error,
        )
        return self.task_output(nxt)

    def task_output(self, env: Envelope) -> Output:
        """A task event produced by a worker (a chain step, a chord callback, an errback);
        keyed by its id, whose determinism makes a re-produced copy recognisable."""
        headers = task_headers(env)
        value = self.app.codec.encode(self.app.envelope_schema, env.to_avro())
        return Output(task_topic(self._ns, env.queue), env.id.encode(), value, headers)

    def errbacks(self, env: Envelope, status: TaskStatus, error: ErrorInfo) -> tuple[Output, ...]:
        """The error callbacks of a task that ended in ``status`` (FAILURE or DEAD)."""
        return self.errback_outputs(
            env.link_error, env.id, env.task, env.attempt, env.root_id, status, error
        )

    def errback_outputs(
        self,
        frames: tuple[bytes, ...] | list[bytes],
        task_id: str,
        task_name: str,
        attempts: int,
        root_id: str | None,
        status: TaskStatus,
        error: ErrorInfo,
    ) -> tuple[Output, ...]:
        failure = TaskFailure(
            task_id=task_id,
            task=task_name,
            status=status.value,
            error_type=error.type,
            message=error.message,
            traceback=error.traceback,
            attempts=attempts,
        )
        out: list[Output] = []
        for i, frame in enumerate(frames):
            try:
                task, partial = self.decode_step(frame)
                args = self.app.codec.encode(
                    task.args_schema, task.signature.complete(partial, failure)
                )
            except (StreamtasksError, ValueError, TypeError, KeyError) as exc:
                log.error("error callback not sent", error=str(exc), task_id=task_id)
                continue
            errback = Envelope(
                id=errback_id(task_id, i),
                task=task.name,
                queue=task.queue,
                args=args,
                root_id=root_id or task_id,
                parent_id=task_id,
            )
            out.append(self.task_output(errback))
        return tuple(out)

    def member_outcome(
        self, env: Envelope, status: TaskStatus, payload: bytes | None, error: ErrorInfo | None
    ) -> Output:
        """A chord member's final outcome, for the join on ``{ns}.chords``."""
        app = self.app
        frame = env.continuation[0]
        _, raw_join = app.codec.decode(frame, expect=app.chord_join_schema)
        chord_id = ChordJoin.from_avro(raw_join).chord_id
        record = ChordMember(frame, env.id, env.task, status.value, payload, error, now_ms())
        headers: Headers = [(hdr.CHORD, chord_id.encode()), (hdr.STATUS, status.value.encode())]
        value = app.codec.encode(app.chord_member_schema, record.to_avro())
        return Output(chords_topic(self._ns), chord_id.encode(), value, headers)

    def chain_end(
        self, env: Envelope, status: TaskStatus, started: int | None, error: ErrorInfo | None
    ) -> tuple[Output, ...]:
        """When a workflow task ends without success (``status``): a chain's last step says
        so too (FAILURE); a chord member reports it to the join."""
        if not env.continuation:
            return ()
        if self.is_join(env.continuation[0]):
            return (self.member_outcome(env, status, None, error),)
        root, index = parse_step_id(env.id) or (env.root_id or env.id, 0)
        last = dataclasses.replace(
            env, id=step_id(root, index + len(env.continuation)), continuation=()
        )
        return (self._results.result_output(last, TaskStatus.FAILURE, started, None, error),)
