"""The topics an app's settings make: which ones a worker consumes, how many partitions its
group owns, and the spec (partitions, config) of every topic ``streamtasks topics apply``
creates. Pure functions of :class:`~streamtasks.config.Settings` and queue names; the names
themselves come from :mod:`streamtasks.wire.topics`.
"""

from __future__ import annotations

from collections.abc import Iterable

from streamtasks.config import Settings
from streamtasks.wire.topics import (
    TopicSpec,
    chords_topic,
    dlq_state_topic,
    dlq_topic,
    events_topic,
    replays_topic,
    results_topic,
    retry_topic,
    revoked_topic,
    scheduler_topic,
    task_topic,
)

__all__ = ["retry_topics", "topic_specs", "worker_partitions", "worker_topics"]


def worker_topics(s: Settings, queues: Iterable[str]) -> list[str]:
    """The topics a worker of ``queues`` consumes: task topics, their retry tiers, and the
    chord outcomes (every worker of the app may join chords)."""
    qs = list(queues)
    tasks = [task_topic(s.namespace, q) for q in qs]
    return tasks + retry_topics(s, qs) + [chords_topic(s.namespace)]


def retry_topics(s: Settings, queues: Iterable[str]) -> list[str]:
    """The retry-tier topics of ``queues``, tier by tier within each queue."""
    tiers = range(1, len(s.retry_tiers) + 1)
    return [retry_topic(s.namespace, q, n) for q in queues for n in tiers]


def worker_partitions(s: Settings, queues: Iterable[str]) -> int:
    """How many partitions a worker group of ``queues`` owns in all (see
    :func:`worker_topics`): what every joined member's assignments add up to."""
    per_queue = s.partitions + len(s.retry_tiers) * s.retry_partition_count
    return len(list(queues)) * per_queue + s.chord_partition_count


def topic_specs(s: Settings, queues: Iterable[str]) -> list[TopicSpec]:
    """Every topic an app of ``queues`` uses, with its partition count and config."""
    ns, compact = s.namespace, {"cleanup.policy": "compact"}
    specs: list[TopicSpec] = []
    for q in queues:
        specs.append(TopicSpec(task_topic(ns, q), s.partitions))
        specs.append(TopicSpec(dlq_topic(ns, q), s.partitions))
        specs.append(TopicSpec(dlq_state_topic(ns, q), 1, dict(compact)))
        for tier in range(1, len(s.retry_tiers) + 1):
            specs.append(TopicSpec(retry_topic(ns, q, tier), s.retry_partition_count))
    specs.append(TopicSpec(results_topic(ns), s.partitions, dict(compact)))
    specs.append(TopicSpec(events_topic(ns), s.partitions))
    specs.append(TopicSpec(revoked_topic(ns), 1, dict(compact)))
    specs.append(TopicSpec(scheduler_topic(ns), 1, dict(compact)))
    specs.append(TopicSpec(chords_topic(ns), s.chord_partition_count))
    specs.append(TopicSpec(replays_topic(ns), 1, dict(compact)))
    return specs
