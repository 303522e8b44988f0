"""The worker's extension point: hooks called at each step of a record's life.

Subclass :class:`WorkerHooks`, override the methods you need (each is a no-op here) and pass
instances as ``Worker(app, hooks=[...])``. This is the seam events, metrics (Prometheus) and
tracing plug into — dramatiq's middleware, karafka's instrumentation. :class:`WorkerStats`,
the counters :meth:`Worker.run` returns, is itself the first hook.

Invariants:

* every hook is called on the **poll thread** (the one running :meth:`Worker.run`), never on a
  task thread, so a hook needs no lock to keep its own state, but it must be quick: the poll
  loop waits for it (a slow hook delays polling and acknowledgements, not task execution);
* a hook only observes: it gets no client and cannot change what the worker does. An exception
  raised by a hook is logged and swallowed — it never stalls an offset or ends the process;
* a method that no hook overrides costs nothing: :class:`HookSet` calls, per step, only the
  hooks whose class overrides that step's method.

The steps, in order for one task record: ``on_received`` (taken into the in-flight window),
``on_started`` (handed to a pool to run — after any earlier task of the same key finished),
``on_finished`` (every output of its outcome acknowledged; ``outcome`` is ``success``,
``failure``, ``retry``, ``dead``, ``expired``, ``skipped`` or ``revoked``) — preceded by
``on_retried`` or ``on_dead_lettered`` for those outcomes — then ``on_committed`` once its
offset is stored for commit (librdkafka commits stored offsets in the background and the worker
synchronously on revoke and shutdown). A record that does not finish here (its partition was
revoked, or shutdown's grace ran out) is counted by ``on_abandoned``; it is redelivered to the
partition's next owner. ``on_assigned`` / ``on_revoked`` follow the group's rebalances.

Two steps carry more than the record, for hooks that measure (the Prometheus metrics):
``on_task_done`` comes right after ``on_finished`` with a :class:`TaskDone` (task name, queue,
the seconds the task thread spent on it, the retry tier or dead-letter reason);
``on_consumer_stats`` gets librdkafka's statistics JSON (consumer lag per partition) every
``stats_interval_ms`` of the hooks that override it — the consumer emits statistics only then.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

import structlog

from streamtasks.wire.headers import TASK, header
from streamtasks.wire.topics import queue_of

if TYPE_CHECKING:
    from streamtasks.worker.outcomes import Record

__all__ = ["HookSet", "TaskDone", "WorkerHooks", "WorkerStats"]

log = structlog.get_logger("streamtasks.worker")

TP = tuple[str, int]


class TaskDone(NamedTuple):
    """What ``on_task_done`` tells about a finished task record (a tuple: made per task)."""

    outcome: str
    #: the ``st-task`` header (``unknown`` when the record has none)
    task: str
    queue: str
    #: seconds the task thread spent on it (decode, run, build outputs); None when no task ran
    runtime: float | None
    #: the retry tier (``retry``) or the dead-letter reason (``dead``), else None
    detail: str | None


class WorkerHooks:
    """No-op hooks for each step of a record's life in a worker; override what you need."""

    #: how often (ms) this hook wants ``on_consumer_stats`` (used when it overrides it)
    stats_interval_ms = 5000

    def on_received(self, record: Record) -> None:
        """A task record was taken into the in-flight window (not a redelivery in progress)."""

    def on_started(self, record: Record) -> None:
        """The task record was handed to its pool to run."""

    def on_finished(self, record: Record, outcome: str) -> None:
        """Every output of the record's outcome was acknowledged; its offset may be committed."""

    def on_task_done(self, record: Record, done: TaskDone) -> None:
        """Right after ``on_finished``: the details a measuring hook needs."""

    def on_consumer_stats(self, stats: str) -> None:
        """librdkafka's statistics JSON of the worker's consumer (on the poll thread)."""

    def on_retried(self, record: Record) -> None:
        """The outcome is a retry: the retry record was acknowledged (before ``on_finished``)."""

    def on_dead_lettered(self, record: Record) -> None:
        """The outcome is a dead letter, acknowledged (before ``on_finished``)."""

    def on_abandoned(self, count: int) -> None:
        """``count`` received records will not finish here: redelivered to the next owner."""

    def on_chord_joined(self, record: Record) -> None:
        """A chord's last member arrived: its callback (or its failure) was acknowledged."""

    def on_committed(self, offsets: Sequence[tuple[str, int, int]]) -> None:
        """``(topic, partition, next offset)`` were stored for commit."""

    def on_assigned(self, partitions: Sequence[TP]) -> None:
        """The group gave these partitions to this worker."""

    def on_revoked(self, partitions: Sequence[TP], *, lost: bool) -> None:
        """These partitions were taken away (``lost``: without a chance to commit)."""


@dataclass
class WorkerStats(WorkerHooks):
    """The counters :meth:`Worker.run` returns (and logs on stop)."""

    received: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    expired: int = 0
    dead_lettered: int = 0
    skipped: int = 0
    revoked: int = 0
    abandoned: int = 0
    chords_joined: int = 0

    def on_received(self, record: Record) -> None:
        self.received += 1

    def on_finished(self, record: Record, outcome: str) -> None:
        if outcome == "success":
            self.succeeded += 1
        elif outcome == "failure":
            self.failed += 1
        elif outcome == "expired":
            self.expired += 1
        elif outcome == "skipped":
            self.skipped += 1
        elif outcome == "revoked":
            self.revoked += 1

    def on_retried(self, record: Record) -> None:
        self.retried += 1

    def on_dead_lettered(self, record: Record) -> None:
        self.dead_lettered += 1

    def on_abandoned(self, count: int) -> None:
        self.abandoned += count

    def on_chord_joined(self, record: Record) -> None:
        self.chords_joined += 1


def _overrides(hook: WorkerHooks, name: str) -> bool:
    return getattr(type(hook), name) is not getattr(WorkerHooks, name)


def _overriding(hooks: Sequence[WorkerHooks], name: str) -> tuple[Callable[..., None], ...]:
    return tuple(getattr(h, name) for h in hooks if _overrides(h, name))


class HookSet:
    """Calls a list of hooks, each step only on the hooks that override it; errors are logged."""

    def __init__(self, hooks: Sequence[WorkerHooks], namespace: str = "streamtasks") -> None:
        self.hooks = tuple(hooks)
        self._ns = namespace
        self._names: dict[bytes, str] = {}  # st-task header -> task name
        self._received = _overriding(hooks, "on_received")
        self._started = _overriding(hooks, "on_started")
        #: whether any hook overrides ``on_started`` (the worker skips the call otherwise)
        self.any_started = bool(self._started)
        self._finished = _overriding(hooks, "on_finished")
        self._task_done = _overriding(hooks, "on_task_done")
        self.any_task_done = bool(self._task_done)  # likewise for ``on_task_done``
        self._stats = _overriding(hooks, "on_consumer_stats")
        #: the statistics interval the consumer needs (None: no hook wants statistics)
        self.stats_interval_ms: int | None = min(
            (h.stats_interval_ms for h in hooks if _overrides(h, "on_consumer_stats")),
            default=None,
        )
        self._retried = _overriding(hooks, "on_retried")
        self._dead_lettered = _overriding(hooks, "on_dead_lettered")
        self._abandoned = _overriding(hooks, "on_abandoned")
        self._chord_joined = _overriding(hooks, "on_chord_joined")
        self._committed = _overriding(hooks, "on_committed")
        self._assigned = _overriding(hooks, "on_assigned")
        self._revoked = _overriding(hooks, "on_revoked")

    # the three steps of every task record call their hooks inline (not through _call):
    # one Python call less per hook and task
    def received(self, record: Record) -> None:
        for hook in self._received:
            try:
                hook(record)
            except Exception:
                _failed(hook)

    def started(self, record: Record) -> None:
        for hook in self._started:
            try:
                hook(record)
            except Exception:
                _failed(hook)

    def finished(self, record: Record, outcome: str) -> None:
        if outcome == "retry":
            for hook in self._retried:
                _call(hook, record)
        elif outcome == "dead":
            for hook in self._dead_lettered:
                _call(hook, record)
        for hook in self._finished:
            try:
                hook(record, outcome)
            except Exception:
                _failed(hook)

    def task_done(
        self, record: Record, outcome: str, runtime: float | None, detail: str | None
    ) -> None:
        if not self._task_done:
            return
        raw = header(record.headers, TASK) or b""
        task = self._names.get(raw)
        if task is None:
            task = raw.decode(errors="replace") or "unknown"
            if len(self._names) < 1000:  # names come from records: bound the cache
                self._names[raw] = task
        done = TaskDone(outcome, task, queue_of(record.topic, self._ns), runtime, detail)
        for hook in self._task_done:
            _call(hook, record, done)

    def consumer_stats(self, stats: str) -> None:
        for hook in self._stats:
            _call(hook, stats)

    def abandoned(self, count: int) -> None:
        if count:
            for hook in self._abandoned:
                _call(hook, count)

    def chord_joined(self, record: Record) -> None:
        for hook in self._chord_joined:
            _call(hook, record)

    def committed(self, offsets: Sequence[tuple[str, int, int]]) -> None:
        for hook in self._committed:
            _call(hook, offsets)

    def assigned(self, partitions: Sequence[TP]) -> None:
        for hook in self._assigned:
            _call(hook, partitions)

    def revoked(self, partitions: Sequence[TP], *, lost: bool) -> None:
        for hook in self._revoked:
            _call(hook, partitions, lost=lost)


def _call(hook: Callable[..., None], *args: Any, **kwargs: Any) -> None:
    try:
        hook(*args, **kwargs)
    except Exception:  # a hook observes; it must not stall an offset or end the process
        _failed(hook)


def _failed(hook: Callable[..., None]) -> None:
    """In an ``except`` block: ``hook`` raised; logged with the traceback, then swallowed."""
    log.exception("error in a worker hook", hook=getattr(hook, "__qualname__", repr(hook)))
