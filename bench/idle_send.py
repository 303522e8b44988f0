"""How long a lone record waits in a producer with ``linger.ms`` 5, and what a flush saves.

    python bench/idle_send.py [--n 400]

One idempotent producer (``linger.ms`` 5) on an embedded Tansu; each mode produces ``--n``
records one at a time, 3 ms apart, and measures produce() -> delivery report: ``plain``
(poll until delivered), ``flush0`` (``flush(0)`` right after produce()), ``flush0.0002`` and
``flush0.001`` (``flush(timeout)``: returns once delivered, or after the timeout); p50 / p99
ms. The basis of the "sends after a quiet spell" trial in bench/README.md (tried, reverted).
"""

from __future__ import annotations

import argparse
import logging
import time

import structlog
from confluent_kafka import Producer

from streamtasks.dev.broker import EmbeddedBroker

MODES = ("plain", "flush0", "flush0.0002", "flush0.001")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=400)
    args = ap.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    with EmbeddedBroker() as broker:
        producer = Producer(
            {
                "bootstrap.servers": broker.bootstrap_servers,
                "linger.ms": 5,
                "enable.idempotence": True,
            }
        )
        producer.produce("idle-send", b"warm-up")
        producer.flush(10)
        for mode in MODES * 2:
            waits = []
            for _ in range(args.n):
                done: list[float] = []
                start = time.perf_counter()
                producer.produce(
                    "idle-send", b"x", on_delivery=lambda *_, d=done: d.append(time.perf_counter())
                )
                if mode.startswith("flush"):
                    producer.flush(float(mode[len("flush") :]))
                while not done:
                    producer.poll(0.0002)
                waits.append(1000 * (done[0] - start))
                time.sleep(0.003)
            waits.sort()
            p50, p99 = waits[len(waits) // 2], waits[int(len(waits) * 0.99)]
            print(f"{mode:>12}: p50 {p50:.2f} ms, p99 {p99:.2f} ms", flush=True)


if __name__ == "__main__":
    main()
