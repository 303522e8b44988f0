"""The benchmark's streamtasks app: a no-op task and two 20 ms sleep tasks.

``bench.noop`` is the throughput/latency task; ``bench.sleep20`` (``time.sleep``, run on the
worker's thread pool, ``--concurrency``) and ``bench.asleep20`` (``asyncio.sleep``, run on the
worker's event loop, ``--async-concurrency``) are for the sleep-bound parts.

Workers load it as ``bench_app:app`` (cwd or PYTHONPATH = this folder); the namespace and the
bootstrap address come from STREAMTASKS_NAMESPACE / STREAMTASKS_BOOTSTRAP_SERVERS, so each
benchmark part can use fresh topics. ``bench/run.py`` builds its client-side app with
:func:`make_app` and the same settings.
"""

from __future__ import annotations

import asyncio
import time

from streamtasks import App

PARTITIONS = 6

# The consumer settings of the benchmark (the raw baseline uses the same ones).
CONSUMER_CONFIG: dict[str, str | int | float | bool] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 1000,
    "fetch.wait.max.ms": 10,
}


def make_app(namespace: str | None = None, bootstrap_servers: str | None = None) -> App:
    app = App(
        "bench",
        bootstrap_servers=bootstrap_servers,
        namespace=namespace,
        partitions=PARTITIONS,
        consumer_config=CONSUMER_CONFIG,
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
