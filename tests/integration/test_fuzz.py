"""Property-based fuzzing of a real worker process with hostile records on real topics.

Hypothesis draws batches of records no well-behaved client would write — envelopes with
arbitrary field values (ids of every deterministic shape, names, queues, timestamps and
attempts at the extremes, continuation and link_error frames with valid fingerprints and
corrupt bodies), arbitrary headers (``st-*`` ones included) on the task topic and a retry
tier, null keys and values, truncated and bit-flipped frames — and interleaves valid tasks.

Invariants: the worker process stays up; every hostile record gets exactly one outcome (a
dead letter naming it as origin, or a result under its task id); the group's committed offset
reaches the end of every topic written to; every valid task succeeds.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import pytest
from confluent_kafka import KafkaError, Message, Producer
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from streamtasks import App
from streamtasks.testing import WorkerProcess, consume_all
from streamtasks.wire.codec import MAGIC
from streamtasks.wire.envelope import Envelope, ResultRecord
from streamtasks.wire.topics import dlq_topic, results_topic, retry_topic, task_topic
from tests.integration.conftest import StartWorkers
from tests.integration.test_hardening import _wait_committed_to_end

pytestmark = [pytest.mark.integration, pytest.mark.fault]

INT32 = st.integers(-(2**31), 2**31 - 1)
INT64 = st.integers(-(2**63), 2**63 - 1)
EXTREME_MS = st.one_of(
    st.sampled_from([0, -1, 1, 2**31, 10**15 - 1, -(10**14), 253402300799999, 253402300800000]),
    st.integers(-(10**15) + 1, 10**15 - 1),
)
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
NAME = st.from_regex(r"[A-Za-z0-9._-]{1,20}", fullmatch=True)


@st.composite
def task_ids(draw: st.DrawFn) -> str:
    """Ids of every shape the worker treats specially, and arbitrary text."""
    kind = draw(st.sampled_from(["text", "sched", "wf", "err", "chord"]))
    if kind == "sched":
        return f"sched.{draw(NAME)}.{draw(EXTREME_MS)}"
    if kind in ("wf", "err"):
        return f"{kind}.{draw(NAME)}.{draw(st.integers(-5, 2**70))}"
    if kind == "chord":
        return f"wf.{draw(NAME)}.chord"
    return draw(TEXT)


# A continuation / link_error frame: (schema to take the fingerprint of, body).
FRAMES = st.lists(
    st.tuples(
        st.sampled_from(["signature", "chord_join", "envelope", "random"]),
        st.binary(max_size=40),
    ),
    max_size=3,
)


@dataclass(frozen=True)
class EnvelopeSpec:
    id: str
    task: str
    queue: str
    attempt: int
    created_at: int
    eta: int | None
    expires: int | None
    parent_id: str | None
    root_id: str | None
    workflow_id: str | None
    continuation: list[tuple[str, bytes]]
    link_error: list[tuple[str, bytes]]
    args: tuple[int, int] | bytes


ENVELOPES = st.builds(
    EnvelopeSpec,
    id=task_ids(),
    task=st.one_of(st.sampled_from(["add", "fail", "echo_len", "nobody.has.this", ""]), TEXT),
    queue=st.one_of(st.sampled_from(["default", "no-such-queue", "bad queue/name", ""]), TEXT),
    attempt=st.one_of(st.sampled_from([-(2**31), -1, 0, 1, 2, 2**31 - 1]), INT32),
    created_at=st.one_of(st.sampled_from([0, -(2**63), 2**63 - 1]), INT64),
    eta=st.one_of(st.none(), st.sampled_from([-(2**63), 0, 2**63 - 1]), INT64),
    expires=st.one_of(st.none(), st.sampled_from([-(2**63), 0, 2**63 - 1]), INT64),
    parent_id=st.one_of(st.none(), task_ids()),
    root_id=st.one_of(st.none(), task_ids()),
    workflow_id=st.one_of(st.none(), TEXT),
    continuation=FRAMES,
    link_error=FRAMES,
    args=st.one_of(
        st.tuples(st.integers(-(2**62), 2**62), st.integers(-(2**62), 2**62)),
        st.binary(max_size=30),
    ),
)

HEADER_NAMES = st.one_of(
    st.sampled_from(
        ["st-task", "st-id", "st-attempt", "st-not-before", "st-first-failure", "traceparent"]
    ),
    TEXT,
)
HEADER_VALUES = st.one_of(
    st.none(),
    st.binary(max_size=30),
    st.sampled_from([b"soon", b"", b"-1", b"9" * 5000, b"1e3", b" 12 ", b"\xff\xfe"]),
)


@dataclass(frozen=True)
class RecordSpec:
    to_tier: bool
    key: bytes | None
    headers: list[tuple[str, bytes | None]]
    value: str  # null | random | fingerprint | truncated | flipped | envelope
    envelope: EnvelopeSpec
    noise: bytes
    cut: int


RECORDS = st.builds(
    RecordSpec,
    to_tier=st.booleans(),
    key=st.one_of(st.none(), st.binary(max_size=20)),
    headers=st.lists(st.tuples(HEADER_NAMES, HEADER_VALUES), max_size=4),
    value=st.sampled_from(["null", "random", "fingerprint", "truncated", "flipped", "envelope"]),
    envelope=ENVELOPES,
    noise=st.binary(max_size=200),
    cut=st.integers(0, 10_000),
)


def _frame(app: App, kind: str, body: bytes) -> bytes:
    known = {
        "signature": app.signature_schema,
        "chord_join": app.chord_join_schema,
        "envelope": app.envelope_schema,
    }.get(kind)
    return (known.header if known is not None else MAGIC + body[:8]) + body


def _envelope(app: App, spec: EnvelopeSpec, nonce: str) -> bytes:
    args = (
        app.tasks["add"].encode_args(spec.args, {}) if isinstance(spec.args, tuple) else spec.args
    )
    env = Envelope(
        id=spec.id + nonce if not spec.id[-1:].isdigit() else spec.id,
        task=spec.task,
        queue=spec.queue,
        args=args,
        attempt=spec.attempt,
        created_at=spec.created_at,
        eta=spec.eta,
        expires=spec.expires,
        parent_id=spec.parent_id,
        root_id=spec.root_id,
        workflow_id=spec.workflow_id,
        continuation=tuple(_frame(app, k, b) for k, b in spec.continuation),
        link_error=tuple(_frame(app, k, b) for k, b in spec.link_error),
    )
    return app.codec.encode(app.envelope_schema, env.to_avro())


def _value(app: App, spec: RecordSpec, nonce: str) -> bytes | None:
    if spec.value == "null":
        return None
    if spec.value == "random":
        return spec.noise
    if spec.value == "fingerprint":
        return app.envelope_schema.header + spec.noise
    whole = _envelope(app, spec.envelope, nonce)
    if spec.value == "truncated":
        return whole[: spec.cut % len(whole)]
    if spec.value == "flipped":
        bit = spec.cut % (8 * len(whole))
        flipped = bytearray(whole)
        flipped[bit // 8] ^= 1 << (bit % 8)
        return bytes(flipped)
    return whole


def _headers(app: App, spec: RecordSpec) -> list[tuple[str, bytes | None]]:
    # a due time in the far future would hold a tier partition as long (a legitimate
    # countdown): keep the valid ones near now, the rest is arbitrary
    out: list[tuple[str, bytes | None]] = []
    for name, value in spec.headers:
        if name == "st-not-before" and value is not None:
            try:
                if int(value) > time.time() * 1000:
                    value = str(int(time.time() * 1000) + 500).encode()
            except ValueError:
                pass
        out.append((name, value))
    return out


def _task_id(app: App, value: bytes | None) -> str | None:
    try:
        return str(app.codec.decode(value, expect=app.envelope_schema)[1]["id"])
    except Exception:
        return None


@pytest.fixture
def fuzz_worker(start_workers: StartWorkers) -> WorkerProcess:
    (worker,) = start_workers(1)
    return worker


TOTALS = Counter[str]()


@settings(
    max_examples=10,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: each example is a broker run
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,  # one worker for all examples, on purpose
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(batch=st.lists(RECORDS, min_size=20, max_size=40))
def test_hostile_records_never_stop_the_worker_and_each_gets_one_outcome(
    app: App, fuzz_worker: WorkerProcess, kafka_bootstrap: str, ns: str, batch: list[RecordSpec]
) -> None:
    nonce = f"#{TOTALS['examples']}"
    TOTALS["examples"] += 1
    raw = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 5})
    topic, tier = task_topic(ns, "default"), retry_topic(ns, "default", 1)
    written: list[tuple[str, int, int, bytes | None]] = []

    def delivered(err: KafkaError | None, msg: Message) -> None:
        assert err is None, err
        written.append((msg.topic(), msg.partition(), msg.offset(), msg.value()))  # type: ignore[arg-type]

    # Given a batch of hostile records on the task topic and a retry tier, valid tasks between
    handles = []
    for i, spec in enumerate(batch):
        raw.produce(
            tier if spec.to_tier else topic,
            value=_value(app, spec, nonce),
            key=spec.key,
            headers=_headers(app, spec),
            on_delivery=delivered,
        )
        if i % 4 == 0:
            handles.append((i, app.tasks["add"].send(i, 1)))
    assert raw.flush(30) == 0
    TOTALS["records"] += len(written)
    TOTALS["valid"] += len(handles)
    # Then every valid task succeeds
    assert [h.get(timeout=60) for _, h in handles] == [i + 1 for i, _ in handles]
    # And every hostile record gets exactly one outcome: a dead letter naming it, or a result
    # under its task id
    origin = {(t, p, o): _task_id(app, v) for t, p, o, v in written}
    letters: Counter[tuple[str, int, int]] = Counter()
    ids: set[str] = set()

    def settled() -> bool:
        dead = consume_all(
            kafka_bootstrap, dlq_topic(ns, "default"), expect=lambda _: False, timeout=1
        )
        letters.clear()
        for m in dead:
            h = dict(m.headers() or [])
            letters[
                (
                    h["st-origin-topic"].decode(),
                    int(h["st-origin-partition"]),
                    int(h["st-origin-offset"]),
                )
            ] += 1  # type: ignore[union-attr, arg-type]
        results = consume_all(kafka_bootstrap, results_topic(ns), expect=lambda _: False, timeout=1)
        ids.clear()
        for m in results:
            rec = ResultRecord.from_avro(app.codec.decode(m.value(), expect=app.result_schema)[1])
            if rec.status.is_final:
                ids.add(rec.task_id)
        return all(letters[o] or (tid is not None and tid in ids) for o, tid in origin.items())

    deadline = time.monotonic() + 60
    while not settled():
        assert time.monotonic() < deadline, [
            o for o, tid in origin.items() if not (letters[o] or tid in ids)
        ]
        assert fuzz_worker.is_alive(), fuzz_worker.log_text()[-3000:]
    assert not [o for o, n in letters.items() if n > 1], "a record was dead-lettered twice"
    TOTALS["dead"] = sum(letters.values())
    # And the worker committed to the end of both topics, and is still up
    _wait_committed_to_end(app, kafka_bootstrap, topic)
    _wait_committed_to_end(app, kafka_bootstrap, tier)
    assert fuzz_worker.is_alive(), fuzz_worker.log_text()[-3000:]
    print(f"\nfuzz: {dict(TOTALS)}")
