"""The clients and collaborators of one worker run, made together and closed together.

:meth:`Session.open` makes, for one :meth:`Worker.run <streamtasks.worker.Worker.run>`, the
consumer and producer, flow control, the :class:`~streamtasks.worker.outputs.Outputs` on that
producer, the :class:`~streamtasks.worker.executor.Executor`, the chord joiner, the pools and
the indexes; :meth:`Session.close` closes them in order (the consumer first: it leaves the
group; then the producer is flushed). Holding them in one object built in ``run()`` means the
worker has no collaborator that may be missing: only the async runner, the process pool and
the burst-mode drain watch are optional, because they exist only when needed.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog
from confluent_kafka import Consumer, KafkaException, Producer

from streamtasks.config import KafkaValue
from streamtasks.kafka import clients, reader
from streamtasks.kafka.earlysend import linger_seconds
from streamtasks.topology import retry_topics
from streamtasks.wire.topics import events_topic, results_topic
from streamtasks.worker.burst import DrainWatch
from streamtasks.worker.busywait import STATS_INTERVAL_MS, BusyWaitWatch
from streamtasks.worker.chords import ChordJoiner
from streamtasks.worker.executor import Executor
from streamtasks.worker.flow import PartitionFlow
from streamtasks.worker.indexes import FiredIndex, RevokedIndex
from streamtasks.worker.outcomes import result_refused
from streamtasks.worker.outputs import Job, Outputs
from streamtasks.worker.pools.aio import AsyncRunner
from streamtasks.worker.pools.processes import ProcessPool
from streamtasks.worker.pools.threads import ThreadPool

if TYPE_CHECKING:
    from streamtasks.app import App

__all__ = ["Session", "SessionSpec", "retry_rest"]

log = structlog.get_logger("streamtasks.worker")


#: Classic-protocol settings that the broker owns under ``group.protocol=consumer`` (librdkafka
#: refuses them there): ``group.consumer.session.timeout.ms`` and friends on the broker.
_BROKER_SIDE_UNDER_KIP848 = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
)

#: the longest an idle retry-tier partition rests (see PartitionFlow): a retry written to it
#: meanwhile is picked up this much later at most
MAX_RETRY_REST_S = 1.0


def retry_rest(tiers: Sequence[float], consumer_cfg: dict[str, KafkaValue]) -> tuple[float, float]:
    """``(rest_s, awake_s)`` for idle retry-tier partitions. The rest is a quarter of the
    shortest tier's delay, at most :data:`MAX_RETRY_REST_S`, so a retry is late by at most a
    quarter of its own delay. A partition counts as idle after two fetch waits (plus 50 ms)
    without a record: long enough to have seen at least one fetch's answer. Where the rest
    would not be longer than that (a long fetch wait: idle fetches are rare anyway, or very
    short tiers), the flow does not rest partitions."""
    wait_ms = reader.fetch_wait_ms(consumer_cfg)
    rest_s = min(MAX_RETRY_REST_S, min(tiers) / 4) if tiers else 0.0
    return rest_s, 2 * wait_ms / 1000 + 0.05


@dataclass(frozen=True, slots=True)
class SessionSpec:
    """The worker options a session is made from (None: that pool is not needed)."""

    worker_id: str
    group_id: str
    cooperative: bool
    group_protocol: str
    burst: bool
    queues: Sequence[str]
    concurrency: int
    async_concurrency: int | None
    process_concurrency: int | None
    app_spec: str | None
    max_in_flight: int
    max_in_flight_per_partition: int
    stats_interval_ms: int | None = None  # librdkafka statistics for hooks (None: off)
    events: bool = False  # per-task events on: their batches get a producer of their own


@dataclass(slots=True, eq=False)
class Session:
    """What one :meth:`Worker.run` opened: its clients, pools and collaborators (built in
    :meth:`open`, closed by :meth:`close`), so none of them is ever missing."""

    consumer: Consumer
    producer: Producer
    #: the task events' producer (events on): its own connection, so the event batches never
    #: queue behind the outputs for one of the connection's in-flight requests (librdkafka
    #: sends one partition per ProduceRequest, at most 5 in flight with idempotence)
    events_producer: Producer | None
    flow: PartitionFlow
    outputs: Outputs
    executor: Executor
    joiner: ChordJoiner
    pool: ThreadPool
    aio: AsyncRunner | None  # only with async tasks
    processes: ProcessPool | None  # only with pool="process" tasks
    revoked: RevokedIndex
    drain: DrainWatch | None  # burst mode only
    #: reads the output producer's statistics (None: the user configured statistics)
    busy_wait: BusyWaitWatch | None = None

    def close(self, *, wait_for_pool: bool) -> None:
        try:
            self.consumer.close()  # leaves the group (triggers a rebalance at once)
        except (KafkaException, RuntimeError) as exc:
            log.warning("consumer close failed", error=str(exc))
        self.producer.flush(5.0)
        if self.events_producer is not None:
            self.events_producer.flush(5.0)
        # the task threads end once idle either way (a run must not leave threads behind: a
        # process may run workers one after another); only a clean stop waits for them
        self.pool.shutdown(timeout=1.0 if wait_for_pool else 0.0)
        if self.aio is not None:
            self.aio.shutdown(timeout=1.0)
        if self.processes is not None:
            self.processes.shutdown()
        self.executor.close()
        self.revoked.close()

    @classmethod
    def open(
        cls,
        app: App,
        spec: SessionSpec,
        *,
        done: Callable[[Job, bool], None],
        fatal: Callable[[], None],
        stats: Callable[[str], None] | None = None,
    ) -> Session:
        """Make the clients, pools and collaborators of one run; ``done`` / ``fatal``: see
        :class:`~streamtasks.worker.outputs.Outputs`; ``stats``: gets the consumer's
        statistics JSON every ``spec.stats_interval_ms``."""
        settings = app.settings
        out_cfg: dict[str, KafkaValue] = {
            "client.id": f"{spec.worker_id}-out",
            # dead letters carry the consumed bytes, which may exceed our own limit
            "message.max.bytes": max(1_000_000, 2 * settings.max_payload_bytes + 65_536),
        }
        producer_cfg: dict[str, object] = dict(settings.worker_producer(**out_cfg))
        watch = None
        if "statistics.interval.ms" not in producer_cfg:  # the user's own statistics win
            watch = BusyWaitWatch(1000 * linger_seconds(producer_cfg))
            producer_cfg["statistics.interval.ms"] = STATS_INTERVAL_MS
            producer_cfg["stats_cb"] = watch.on_stats
        producer = clients.make_producer(producer_cfg)
        events_producer = None
        if spec.events:
            events_cfg: dict[str, KafkaValue] = {"client.id": f"{spec.worker_id}-events"}
            events_producer = clients.make_producer(settings.worker_producer(**events_cfg))
        consumer_cfg: dict[str, KafkaValue] = {"client.id": spec.worker_id}
        if spec.cooperative:
            consumer_cfg["partition.assignment.strategy"] = "cooperative-sticky"
        drain = None
        if spec.burst:
            consumer_cfg["enable.partition.eof"] = True
            drain = DrainWatch()
        if spec.stats_interval_ms is not None and stats is not None:
            consumer_cfg["statistics.interval.ms"] = spec.stats_interval_ms
        group_cfg = settings.consumer(spec.group_id, **consumer_cfg)
        if spec.group_protocol == "consumer":
            group_cfg["group.protocol"] = "consumer"
            for broker_side in _BROKER_SIDE_UNDER_KIP848:
                group_cfg.pop(broker_side, None)
        cfg: dict[str, object] = dict(group_cfg)
        if spec.stats_interval_ms is not None and stats is not None:
            cfg["stats_cb"] = stats  # called from consume/poll: on the poll thread
        consumer = clients.make_consumer(cfg)
        rest_s, awake_s = retry_rest(settings.retry_tiers, group_cfg)
        flow = PartitionFlow(
            consumer,
            max_in_flight=spec.max_in_flight,
            per_partition=spec.max_in_flight_per_partition,
            # a burst reads every partition to its end: nothing rests there
            rest_topics=() if spec.burst else retry_topics(settings, spec.queues),
            rest_s=rest_s,
            awake_s=awake_s,
        )
        outputs = Outputs(
            producer,
            results_topic=results_topic(app.settings.namespace),
            refused=functools.partial(result_refused, app),
            done=done,
            fatal=fatal,
            seen=drain.seen if drain is not None else None,
            events_topic=events_topic(app.settings.namespace),
            events_key=spec.worker_id.encode(),
            events_producer=events_producer,
        )
        aio = None
        if spec.async_concurrency is not None:
            aio = AsyncRunner(spec.async_concurrency)
        processes = None
        if spec.process_concurrency is not None and spec.app_spec is not None:
            processes = ProcessPool(spec.app_spec, spec.process_concurrency)
        fired = None
        scheduled = {s.task_name for s in app.schedules.values()}
        if any(app.tasks[name].queue in spec.queues for name in scheduled):
            fired = FiredIndex(app)
        revoked = RevokedIndex(app)
        executor = Executor(
            app,
            spec.worker_id,
            processes=processes,
            fired=fired,
            revoked=revoked,
            emit_early=outputs.produce_untracked,
        )
        return cls(
            consumer=consumer,
            producer=producer,
            events_producer=events_producer,
            flow=flow,
            outputs=outputs,
            executor=executor,
            joiner=ChordJoiner(executor.results, executor.continuation),
            pool=ThreadPool(spec.concurrency),
            aio=aio,
            processes=processes,
            revoked=revoked,
            drain=drain,
            busy_wait=watch,
        )
