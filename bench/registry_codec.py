"""Our codec vs confluent-kafka's AvroSerializer/AvroDeserializer, Confluent wire format.

    python bench/registry_codec.py

Both run against the same in-process ``mock://`` registry (so no HTTP in either), on a task
envelope record (the message every task is), single thread, best of 3 x 20,000. Also shows our
single-object framing for reference. Both produce byte-identical frames (checked).
"""

from __future__ import annotations

import sys
import timeit
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from confluent_kafka.schema_registry import record_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

from streamtasks import App
from streamtasks.wire.envelope import Envelope
from streamtasks.wire.registry import SchemaRegistry


def us(stmt: Any, number: int = 20000) -> float:
    return 1e6 * min(timeit.repeat(stmt, number=number, repeat=3)) / number


def main() -> int:
    plain = App("bench", bootstrap_servers="127.0.0.1:9")
    app = App("bench", bootstrap_servers="127.0.0.1:9", schema_registry_url="mock://bench")

    @app.task(name="bench.charge")
    def charge(customer: str, amount: int, currency: str = "EUR") -> None: ...

    registry = app.codec.registry
    assert isinstance(registry, SchemaRegistry)
    client = registry.client
    args = charge.encode_args((uuid.uuid4().hex, 100), {})
    record = Envelope(id=uuid.uuid4().hex, task=charge.name, queue="default", args=args).to_avro()
    schema = app.envelope_schema
    ours = app.codec.encode(schema, record)

    import json

    conf = {"auto.register.schemas": True, "subject.name.strategy": record_subject_name_strategy}
    text = json.dumps(schema.source, separators=(",", ":"))  # the text our codec registered
    serializer = AvroSerializer(client, text, conf=conf)
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext("bench.tasks.default", MessageField.VALUE)
    theirs = serializer(record, ctx)
    assert theirs == ours, "the two encoders disagree"
    assert deserializer(theirs, ctx) == app.codec.decode(ours)[1]
    single = plain.codec.encode(plain.envelope_schema, record)

    env = plain.envelope_schema
    ours_codec, plain_codec = app.codec, plain.codec
    rows = [
        (
            "encode",
            "streamtasks Codec, Confluent framing",
            lambda: ours_codec.encode(schema, record),
        ),
        ("encode", "confluent AvroSerializer", lambda: serializer(record, ctx)),
        ("encode", "streamtasks Codec, single-object", lambda: plain_codec.encode(env, record)),
        ("decode", "streamtasks Codec, Confluent framing", lambda: ours_codec.decode(ours, schema)),
        ("decode", "confluent AvroDeserializer", lambda: deserializer(theirs, ctx)),
        ("decode", "streamtasks Codec, single-object", lambda: plain_codec.decode(single, env)),
    ]
    print(f"envelope frame: {len(ours)} bytes (Confluent), {len(single)} bytes (single-object)")
    for op, what, stmt in rows:
        print(f"{op:7} {what:40} {us(stmt):7.2f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
