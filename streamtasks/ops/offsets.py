"""Resetting the workers' committed offsets of a queue's task topic (the Kafka way to re-run
or skip tasks, like ``kafka-consumer-groups --reset-offsets``).

Invariants: nothing is changed while the consumer group has members (a live member would
overwrite the new offsets with its own commits, and Kafka refuses it anyway); the new offsets
are computed from records read (:mod:`streamtasks.kafka.reader`), never from a time index alone;
only ``{ns}.tasks.{queue}`` is moved — retry tiers and the DLQ keep their offsets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from streamtasks.errors import BrokerError, ConfigError
from streamtasks.kafka import clients, reader
from streamtasks.kafka.clients import GroupInfo, MemberInfo
from streamtasks.ops.replayspec import parse_time
from streamtasks.wire.envelope import now_ms
from streamtasks.wire.topics import task_topic

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = [
    "GroupInfo",
    "MemberInfo",
    "PartitionReset",
    "ResetPlan",
    "ResetTarget",
    "new_offset",
    "refusal",
    "reset_offsets",
]

Kind = Literal["datetime", "earliest", "latest", "shift"]


@dataclass(frozen=True, slots=True)
class ResetTarget:
    kind: Kind
    time: str | None = None
    shift: int = 0

    @classmethod
    def of(
        cls,
        *,
        to_datetime: str | None = None,
        to_earliest: bool = False,
        to_latest: bool = False,
        shift_by: int | None = None,
    ) -> ResetTarget:
        """Exactly one of the four choices, else a :class:`ConfigError` saying so."""
        chosen = [
            c
            for c, on in (
                (cls("datetime", time=to_datetime), to_datetime is not None),
                (cls("earliest"), to_earliest),
                (cls("latest"), to_latest),
                (cls("shift", shift=shift_by or 0), shift_by is not None),
            )
            if on
        ]
        if len(chosen) != 1:
            raise ConfigError(
                "give exactly one of --to-datetime T, --to-earliest, --to-latest, --shift-by N"
            )
        return chosen[0]


def new_offset(target: ResetTarget, current: int | None, low: int, end: int, at_time: int) -> int:
    """The offset ``target`` means for a partition holding ``[low, end)`` whose committed offset
    is ``current`` (None: never committed, i.e. at ``low``); ``at_time`` is the first offset
    at or after the target time (for ``datetime``). Always within ``[low, end]``."""
    if target.kind == "earliest":
        offset = low
    elif target.kind == "latest":
        offset = end
    elif target.kind == "datetime":
        offset = at_time
    else:
        offset = (low if current is None or current < 0 else current) + target.shift
    return max(low, min(end, offset))


_LIVE_STATES = {"STABLE", "PREPARING_REBALANCE", "COMPLETING_REBALANCE", "ASSIGNING", "RECONCILING"}


def refusal(group: GroupInfo) -> str | None:
    """Why offsets may not be reset now (None: they may). A group with members, or in a state
    only a group with members has (some brokers report the state but not the members)."""
    if not group.members and group.state not in _LIVE_STATES:
        return None
    who = ", ".join(f"{m.client_id}@{m.host}" for m in group.members[:5]) or "members not listed"
    more = f" and {len(group.members) - 5} more" if len(group.members) > 5 else ""
    return (
        f"the consumer group {group.group!r} has live members ({len(group.members)} listed: "
        f"{who}{more}; state {group.state}): stop its workers first, then reset — a live "
        "member would overwrite the new offsets with its own commits"
    )


@dataclass(frozen=True, slots=True)
class PartitionReset:
    partition: int
    current: int | None
    new: int


@dataclass(frozen=True, slots=True)
class ResetPlan:
    group: str
    topic: str
    partitions: list[PartitionReset]
    applied: bool


def reset_offsets(app: App, queue: str, target: ResetTarget, *, dry_run: bool = False) -> ResetPlan:
    """Move the worker group's offsets of ``queue``'s task topic to ``target``."""
    settings = app.settings
    if queue not in app.queues():
        raise ConfigError(f"queue {queue!r} has no tasks in app {app.name!r}: {app.queues()}")
    admin = clients.make_admin(settings.admin())
    clients.check_reachable(admin, settings.require_bootstrap(), timeout=5.0)
    group, topic = settings.worker_group(), task_topic(settings.namespace, queue)
    at_ms = parse_time(target.time, now_ms()) if target.time is not None else 0
    consumer = reader.open_reader(app)
    try:
        parts = reader.partitions_of(consumer, topic)
        if not parts:
            raise BrokerError(f"the task topic {topic!r} does not exist")
        current = clients.committed_offsets(admin, group, topic, parts)
        bounds = reader.heads(consumer, {(topic, p): reader.BEGINNING for p in parts})
        rows = []
        for p in parts:
            head = bounds[(topic, p)]
            at = (
                reader.offset_for_time(consumer, topic, p, at_ms)
                if target.kind == "datetime"
                else 0
            )
            rows.append(
                PartitionReset(
                    p, current[p], new_offset(target, current[p], head.start, head.end, at)
                )
            )
    finally:
        consumer.close()
    if dry_run:
        return ResetPlan(group, topic, rows, applied=False)
    reason = refusal(clients.describe_group(admin, group))
    if reason is not None:
        raise ConfigError(f"offsets not reset: {reason}")
    clients.alter_offsets(admin, group, topic, {r.partition: r.new for r in rows})
    return ResetPlan(group, topic, rows, applied=True)
