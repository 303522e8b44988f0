"""The benchmark's streamtasks app: a no-op task and two 20 ms sleep tasks.

``bench.noop`` is the throughput/latency task; ``bench.sleep20`` (``time.sleep``, run on the
worker's thread pool, ``--concurrency``) and ``bench.asleep20`` (``asyncio.sleep``, run on the
worker's event loop, ``--async-concurrency``) are for the sleep-bound parts.

Workers load it as ``bench_app:app`` (cwd or PYTHONPATH = this folder); the namespace and the
bootstrap address come from STREAMTASKS_NAMESPACE / STREAMTASKS_BOOTSTRAP_SERVERS, so each
benchmark part can use fresh topics. ``BENCH_CLIENT_LINGER_MS`` / ``BENCH_WORKER_LINGER_MS``
set ``linger.ms`` of one side only (``client_producer_config`` / ``worker_producer_config``),
for measuring the trade-off; ``BENCH_FETCH_WAIT_MS`` the consumers' ``fetch.wait.max.ms``
(default 10: Tansu answers an empty fetch only after it, so it bounds the pick-up delay);
``BENCH_SIDE_PARTITIONS`` the partitions of the retry-tier and chord topics (default: as the
task topic, 6), for measuring what idle subscribed partitions cost; ``BENCH_CONSUMER_EXTRA``
(``k=v,k=v``) more consumer settings of the streamtasks app (not the raw baseline's);
``BENCH_CLIENT_STATS_DIR`` a folder where every librdkafka client the app makes in this
process (producers, consumers) writes its latest statistics JSON once a second
(``{pid}-{name}.json``: per-broker ``wakeups``, ``tx``, ``rtt`` and the like), for finding
which client's threads burn CPU.
``bench/run.py`` builds its client-side app with
:func:`make_app` and the same settings.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from streamtasks import App

PARTITIONS = 6

# The consumer settings of the benchmark (the raw baseline uses the same ones).
CONSUMER_CONFIG: dict[str, str | int | float | bool] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.wait.max.ms": int(os.environ.get("BENCH_FETCH_WAIT_MS", "10")),
}


def _linger(var: str) -> dict[str, str | int | float | bool]:
    value = os.environ.get(var)
    return {} if value is None else {"linger.ms": float(value)}


def _extra(var: str) -> dict[str, str | int | float | bool]:
    """``k=v,k=v`` from the environment: more settings for the streamtasks side only."""
    pairs = [item.split("=", 1) for item in os.environ.get(var, "").split(",") if item]
    return {k.strip(): v.strip() for k, v in pairs}


def _side_partitions() -> int | None:
    value = os.environ.get("BENCH_SIDE_PARTITIONS")
    return None if value is None else int(value)


def _record_client_stats(folder: str) -> None:
    """Every client made through ``streamtasks.kafka.clients`` writes its statistics."""
    import json
    from pathlib import Path

    from streamtasks.kafka import clients

    Path(folder).mkdir(parents=True, exist_ok=True)

    def writer(cfg: dict[str, Any]) -> dict[str, Any]:
        def on_stats(raw: str) -> None:
            name = json.loads(raw).get("name", "client").replace("#", "-")
            Path(folder, f"{os.getpid()}-{name}.json").write_text(raw)

        return {**cfg, "statistics.interval.ms": 1000, "stats_cb": on_stats}

    make_producer, make_consumer = clients.make_producer, clients.make_consumer
    clients.make_producer = lambda cfg: make_producer(writer(cfg))  # type: ignore[assignment]
    clients.make_consumer = lambda cfg: make_consumer(writer(cfg))  # type: ignore[assignment]


if os.environ.get("BENCH_CLIENT_STATS_DIR"):
    _record_client_stats(os.environ["BENCH_CLIENT_STATS_DIR"])


def make_app(namespace: str | None = None, bootstrap_servers: str | None = None) -> App:
    app = App(
        "bench",
        bootstrap_servers=bootstrap_servers,
        namespace=namespace,
        partitions=PARTITIONS,
        retry_partitions=_side_partitions(),
        chord_partitions=_side_partitions(),
        consumer_config={**CONSUMER_CONFIG, **_extra("BENCH_CONSUMER_EXTRA")},
        client_producer_config=_linger("BENCH_CLIENT_LINGER_MS"),
        worker_producer_config=_linger("BENCH_WORKER_LINGER_MS"),
    )

    @app.task(name="bench.noop")
    def noop(i: int) -> int:
        return i

    @app.task(name="bench.sleep20")
    def sleep20(i: int) -> int:
        time.sleep(0.02)
        return i

    @app.task(name="bench.asleep20")
    async def asleep20(i: int) -> int:
        await asyncio.sleep(0.02)
        return i

    return app


app = make_app()
