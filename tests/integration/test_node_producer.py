"""A task produced by a non-Python tool (Node: avsc + kafkajs), following schemas/README.md
with only the exported schemas, runs on a streamtasks worker."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path

import pytest

from streamtasks import App
from streamtasks.asyncresult import AsyncResult
from streamtasks.schema_export import collect, write_export
from tests.integration.conftest import StartWorkers

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.partitions(3)
def test_a_task_sent_from_node_runs_on_a_worker(
    app: App,
    kafka_bootstrap: str,
    start_workers: StartWorkers,
    node_packages: Path,
    tmp_path: Path,
) -> None:
    # Given a worker, and the app's schemas exported for the other team
    start_workers(1)
    write_export(collect(app), tmp_path)
    task_id = f"node-{uuid.uuid4().hex}"

    # When a Node process sends add(x=20, y=22) with avsc + kafkajs
    proc = subprocess.run(
        [
            "node",
            str(node_packages / "produce_task.js"),
            kafka_bootstrap,
            app.settings.namespace,
            str(tmp_path),
            "add",
            json.dumps({"x": 20, "y": 22}),
            task_id,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr

    # Then the worker runs it and its result is there under the id Node chose
    assert AsyncResult(task_id, app=app).get(timeout=30) == 42
    # And kafkajs put it where Java's murmur2 puts that key, as does our producer
    sent = json.loads(proc.stdout)
    assert sent["partition"] == _murmur2_partition(task_id.encode(), app.settings.partitions)
    assert sent["partition"] == _partition_of_our_producer(app, kafka_bootstrap, task_id)


def _partition_of_our_producer(app: App, bootstrap: str, key: str) -> int:
    """The partition the app's producer picks for ``key`` in a topic like the task topic."""
    from confluent_kafka.admin import AdminClient, NewTopic

    topic = f"{app.settings.namespace}.partitioner-probe"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, app.settings.partitions, 1)])[topic].result(timeout=30)
    got: list[int] = []
    app.produce(topic, b"probe", key=key, on_delivery=lambda err, msg: got.append(msg.partition()))
    app.flush(30)
    assert len(got) == 1
    return got[0]


def _murmur2_partition(key: bytes, partitions: int) -> int:
    """Kafka's default partitioner (Java ``Utils.murmur2``), written out for the check."""
    m, r, seed = 0x5BD1E995, 24, 0x9747B28C
    length = len(key)
    h = (seed ^ length) & 0xFFFFFFFF
    for i in range(0, length - length % 4, 4):
        k = int.from_bytes(key[i : i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = (h * m) & 0xFFFFFFFF
        h ^= k
    rest = length % 4
    tail = key[length - rest :]
    if rest == 3:
        h ^= tail[2] << 16
    if rest >= 2:
        h ^= tail[1] << 8
    if rest >= 1:
        h ^= tail[0]
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions
