"""A broker crash (kill -9 of Apache Kafka mid-run, then a restart on the same data and ports).

These tests run on a broker of their own, started for this module, not on the session's: a
Kafka broker restarted after kill -9 loads every partition it holds before it answers, and
the session's broker holds the thousands of partitions the suite made by then (a restart of
it took over 90 s in a CI run with both test passes side by side). On a broker of its own a
restart takes seconds, and the test measures what the workers do, not how big the suite is.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest
from confluent_kafka import Message

from streamtasks import App
from streamtasks.dev.kafka import KafkaBroker
from streamtasks.testing import BrokerKind, consume_all
from streamtasks.wire.topics import results_topic
from tests.integration.conftest import StartWorkers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def crash_broker(broker_kind: BrokerKind) -> Iterator[KafkaBroker]:
    """A local Apache Kafka for this module alone, to ``kill()`` and ``start()`` again."""
    if broker_kind != "kafka":
        pytest.skip(
            "needs the local Apache Kafka (STREAMTASKS_TEST_BROKER=kafka) to kill and restart: "
            "the embedded Tansu broker keeps its data in memory and loses it on restart"
        )
    broker = KafkaBroker()
    broker.start()
    try:
        yield broker
    finally:
        broker.close()


@pytest.fixture(scope="module")
def kafka_bootstrap(crash_broker: KafkaBroker) -> str:
    """The module's own broker stands in for the session's (``app``, ``start_workers``)."""
    return crash_broker.bootstrap_servers


@pytest.fixture
def kafka_broker(crash_broker: KafkaBroker) -> Iterator[KafkaBroker]:
    """The module's broker, running again when the test ends."""
    yield crash_broker
    if not crash_broker.is_running():
        crash_broker.start()


def _distinct_keys(n: int) -> Callable[[list[Message]], bool]:
    return lambda msgs: len({m.key() for m in msgs}) >= n


# -- broker crash -----------------------------------------------------------------------------


@pytest.mark.fault
@pytest.mark.slow
# down 35 s: longer than a worker waits (groupwatch.FIRST_WARNING, 30 s) before it asks the
# broker about its group; librdkafka 2.16 used to abort both workers once the broker was back
@pytest.mark.parametrize("down_s", [0.0, 35.0], ids=["restart", "down-35s"])
def test_kill_9_of_the_broker_mid_run_loses_no_task(
    app: App,
    start_workers: StartWorkers,
    kafka_bootstrap: str,
    ns: str,
    kafka_broker: KafkaBroker,
    down_s: float,
) -> None:
    n = 5000
    # Given 2 workers working through 5,000 tasks of ~10 ms
    workers = start_workers(2, "--concurrency", "4")
    handles = [app.tasks["work"].send(i, sleep_ms=10) for i in range(n)]
    app.flush()
    deadline = time.monotonic() + 120
    while sum(h.ready() for h in handles) < n // 4:
        assert time.monotonic() < deadline, "a quarter of the tasks did not finish in 120 s"
        time.sleep(0.05)
    # When the broker is killed -9 and restarted on the same data dir and port
    killed_at = time.monotonic()
    kafka_broker.kill()
    done_at_kill = sum(h.ready() for h in handles)
    time.sleep(down_s)  # the outage itself: nothing to wait for
    kafka_broker.start()
    answering = time.monotonic() - killed_at
    while sum(h.ready() for h in handles) <= done_at_kill:
        assert time.monotonic() - killed_at < 120 + down_s, "no progress 120 s after the restart"
        time.sleep(0.05)
    progressing = time.monotonic() - killed_at
    # Then every task reaches its final result, with its own value
    assert done_at_kill < n, "the run ended before the kill; the test proves nothing"
    deadline = time.monotonic() + 120
    while not all(h.ready() for h in handles) and time.monotonic() < deadline:
        time.sleep(0.2)
    pending = [h.id for h in handles if not h.ready()]
    in_topic = {
        m.key() for m in consume_all(kafka_bootstrap, results_topic(ns), expect=n, timeout=10)
    }
    assert not pending, (
        f"[{len(in_topic)} distinct results in the topic, "
        f"{len({p.encode() for p in pending} & in_topic)} of the pending among them] "
        f"{len(pending)} tasks without a final result 120 s after the restart (e.g. "
        f"{pending[:3]}); workers alive: {[w.is_alive() for w in workers]}; last worker log:\n"
        + "\n".join(w.log_text()[-3000:] for w in workers)
    )
    assert [h.get(timeout=30) for h in handles] == list(range(n))
    # and both workers lived through it (none was restarted)
    assert all(w.is_alive() for w in workers), "\n".join(w.log_text()[-2000:] for w in workers)
    records = consume_all(kafka_bootstrap, results_topic(ns), expect=_distinct_keys(n), timeout=60)
    per_id = Counter(m.key() for m in records)
    lost = n - len(per_id)
    duplicates = sum(per_id.values()) - len(per_id)
    print(
        f"\nbroker kill -9: tasks={n} done_at_kill={done_at_kill} lost={lost} "
        f"duplicates={duplicates} broker_answering_after={answering:.1f}s "
        f"tasks_progressing_after={progressing:.1f}s"
    )
    assert lost == 0
