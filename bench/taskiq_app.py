"""The peer row's taskiq app (taskiq-aio-kafka): one no-op task on a Kafka topic.

Workers load it as ``taskiq worker taskiq_app:broker`` (cwd or PYTHONPATH = this folder);
``TQ_BOOTSTRAP``, ``TQ_TOPIC`` and ``TQ_GROUP`` come from ``bench/peer_taskiq.py``.

Its own idiomatic settings (the library's defaults), except what running it here needs: a
consumer group (without one every worker reads every partition), ``auto_offset_reset=
"earliest"`` (tasks sent before the group joined are not skipped) and the same short fetch
wait and session as the streamtasks workers (Tansu answers an empty fetch only after
``fetch.max.wait``). Offsets are auto-committed every 5 s whether or not the task ran (at
most once on a crash), and there is no result backend: to let the benchmark see a task
finish, the task itself produces one small record (``"pid sent_ns done_ns"``) to
``TQ_TOPIC + ".done"`` without awaiting its acknowledgement.
"""

from __future__ import annotations

import os
import time

from aiokafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from aiokafka.partitioner import DefaultPartitioner
from taskiq_aio_kafka import AioKafkaBroker

TOPIC = os.environ.get("TQ_TOPIC", "taskiq_bench")

broker = AioKafkaBroker(
    bootstrap_servers=os.environ.get("TQ_BOOTSTRAP", "127.0.0.1:9092"), kafka_topic=TOPIC
)
# taskiq-aio-kafka 1.0.0 defaults to kafka-python's partitioner and round-robin assignor,
# which aiokafka 0.14 cannot use ("'DefaultPartitioner' object is not callable", "'str' object
# has no attribute 'metadata'"): aiokafka's own, the same algorithms.
broker.configure_producer(partitioner=DefaultPartitioner())
broker.configure_consumer(
    group_id=os.environ.get("TQ_GROUP", "taskiq-bench"),
    auto_offset_reset="earliest",
    fetch_max_wait_ms=10,
    session_timeout_ms=6000,
    heartbeat_interval_ms=1000,
    partition_assignment_strategy=(RoundRobinPartitionAssignor,),
)


@broker.task(task_name="bench.noop")
async def noop(i: int, sent_ns: int) -> int:
    done = f"{os.getpid()} {sent_ns} {time.time_ns()}".encode()
    await broker._aiokafka_producer.send(TOPIC + ".done", value=done)
    return i
