"""Topic names and topic specifications: every topic name is derived here, nowhere else.

| topic                          | key          | cleanup  |
|--------------------------------|--------------|----------|
| ``{ns}.tasks.{queue}``         | key / task id| delete   |
| ``{ns}.tasks.{queue}.retry.N`` | same         | delete   |
| ``{ns}.tasks.{queue}.dlq``     | same         | delete   |
| ``{ns}.tasks.{queue}.dlq.state``| DLQ ref     | compact  |
| ``{ns}.results``               | task id      | compact  |
| ``{ns}.events``                | task id      | delete   |
| ``{ns}.revoked``               | task id      | compact  |
| ``{ns}.scheduler``             | schedule     | compact  |
| ``{ns}.chords``                | chord id     | delete   |
| ``{ns}.replays``               | replay id(/p)| compact  |
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from streamtasks.wire import headers as hdr

__all__ = [
    "REPLAY_HEADER",
    "REPLAY_OF_HEADER",
    "REPLAY_ORIGIN_HEADER",
    "Headers",
    "TopicSpec",
    "chords_topic",
    "dlq_state_topic",
    "dlq_topic",
    "events_topic",
    "record_size",
    "replays_topic",
    "results_topic",
    "retry_topic",
    "revoked_topic",
    "scheduler_topic",
    "task_topic",
    "validate_name",
]

#: Kafka record headers as confluent-kafka accepts and returns them.
Headers = list[tuple[str, str | bytes | None]]

#: On a task event that a replay enqueued: the replay id. Workers run such an event even when
#: its id already has a final result, and carry the header on to its follow-on task events.
REPLAY_HEADER = hdr.REPLAY
#: On a replayed event: ``topic:partition:offset`` of the original record.
REPLAY_ORIGIN_HEADER = hdr.REPLAY_ORIGIN
#: On an event replayed under a fresh id (``--new-ids``): the original task id.
REPLAY_OF_HEADER = hdr.REPLAY_OF


def record_size(value: bytes | None, key: str | bytes | None, headers: Headers | None) -> int:
    """A record's size as the client's ``message.max.bytes`` check counts it (value, key and
    header bytes; the few bytes of header framing are left to that limit's headroom)."""

    total = _size(value) + _size(key)
    if headers:  # usually none: the send path's fast case
        total += sum(len(k.encode()) + _size(v) for k, v in headers)
    return total


def _size(b: str | bytes | None) -> int:
    if b is None:
        return 0
    return len(b.encode()) if isinstance(b, str) else len(b)


_LEGAL = re.compile(r"^[A-Za-z0-9._-]+$")


def validate_name(kind: str, value: str) -> str | None:
    """Return a fix-it message if ``value`` cannot be part of a Kafka topic name."""
    if not value or not _LEGAL.match(value):
        return (
            f"{kind} {value!r} is not usable in a Kafka topic name: use only letters, digits, "
            "'.', '_' and '-'"
        )
    if len(value) > 200:
        return f"{kind} {value!r} is too long for a Kafka topic name (max ~200 characters)"
    return None


def task_topic(ns: str, queue: str) -> str:
    return f"{ns}.tasks.{queue}"


def retry_topic(ns: str, queue: str, tier: int) -> str:
    return f"{ns}.tasks.{queue}.retry.{tier}"


@functools.lru_cache(maxsize=4096)
def queue_of(topic: str, ns: str) -> str:
    """The queue a task or retry-tier topic belongs to (other topics: the topic itself).

    Cached (the worker asks once a record, its hooks again): callers need no memo of their own."""
    prefix = f"{ns}.tasks."
    queue = topic[len(prefix) :] if topic.startswith(prefix) else topic
    return queue.split(".retry.", 1)[0]


def dlq_topic(ns: str, queue: str) -> str:
    return f"{ns}.tasks.{queue}.dlq"


def dlq_state_topic(ns: str, queue: str) -> str:
    """Compacted redrive/purge markers of ``dlq_topic(ns, queue)``, keyed by DLQ record."""
    return f"{dlq_topic(ns, queue)}.state"


def results_topic(ns: str) -> str:
    return f"{ns}.results"


def revoked_topic(ns: str) -> str:
    """Compacted: ids of revoked tasks (key = task id)."""
    return f"{ns}.revoked"


def events_topic(ns: str) -> str:
    return f"{ns}.events"


def chords_topic(ns: str) -> str:
    """Outcomes of chord members, keyed by chord id so that one partition owner joins them.
    Not compacted: every member's record is needed until its chord is complete."""
    return f"{ns}.chords"


def replays_topic(ns: str) -> str:
    """Compacted progress of replays: the spec under ``{id}``, positions under ``{id}/{p}``."""
    return f"{ns}.replays"


def scheduler_topic(ns: str) -> str:
    return f"{ns}.scheduler"


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    config: dict[str, str] = field(default_factory=dict)
