"""Avro single-object encoding: frames, fingerprints, and errors that keep the raw bytes."""

from __future__ import annotations

import pytest

from streamtasks.errors import DecodeError, SchemaError, UnknownSchemaError
from streamtasks.wire.codec import MAGIC, Codec
from streamtasks.wire.envelope import (
    ENVELOPE_SCHEMA,
    RESULT_SCHEMA,
    Envelope,
    ErrorInfo,
    ResultRecord,
    TaskStatus,
    register_builtin,
)


def test_fingerprint_matches_the_avro_specification_test_vector() -> None:
    # The Avro spec: CRC-64-AVRO("int") = 0x7275d51a3f395c8f, written little endian.
    known = Codec().register("int")
    assert known.fingerprint == (0x7275D51A3F395C8F).to_bytes(8, "little")
    assert known.header == b"\xc3\x01" + known.fingerprint


def test_envelope_round_trips_through_the_wire_format() -> None:
    codec = Codec()
    env_schema, _ = register_builtin(codec)
    env = Envelope(
        id="abc",
        task="billing.charge",
        queue="default",
        args=b"\xc3\x01xyz",
        attempt=3,
        created_at=1_700_000_000_000,
        eta=1_700_000_001_000,
        expires=None,
        parent_id="p",
        root_id="r",
        workflow_id=None,
        continuation=(b"next",),
        last_error=ErrorInfo("ValueError", "bad", "Traceback..."),
    )
    frame = codec.encode(env_schema, env.to_avro())
    assert frame.startswith(MAGIC + env_schema.fingerprint)
    schema, rec = codec.decode(frame)
    assert schema is env_schema
    assert Envelope.from_avro(rec) == env


def test_result_record_round_trips() -> None:
    codec = Codec()
    _, result_schema = register_builtin(codec)
    rec = ResultRecord(
        task_id="t",
        task="x",
        status=TaskStatus.FAILURE,
        attempts=2,
        created_at=1,
        worker_id="w",
        started_at=2,
        finished_at=3,
        value=None,
        error=ErrorInfo("KeyError", "'k'", None),
    )
    out = codec.decode(codec.encode(result_schema, rec.to_avro()), expect=result_schema)[1]
    assert ResultRecord.from_avro(out) == rec


def test_the_shipped_schemas_are_the_ones_in_the_schemas_folder() -> None:
    import json
    from pathlib import Path

    from streamtasks.wire.codec import load_builtin_schema

    root = Path(__file__).resolve().parents[2] / "schemas"
    assert json.loads((root / "envelope.avsc").read_text()) == load_builtin_schema(
        "envelope.avsc", expand=False
    )
    assert json.loads((root / "result.avsc").read_text()) == load_builtin_schema(
        "result.avsc", expand=False
    )
    # the files refer to the shared TaskError by name; the loaded schemas define it inline
    assert json.loads((root / "task_error.avsc").read_text())["fields"] == next(
        f["type"][1]["fields"] for f in RESULT_SCHEMA["fields"] if f["name"] == "error"
    )


@pytest.mark.parametrize(
    ("data", "error", "text"),
    [
        (None, DecodeError, "no value"),
        (b"", DecodeError, "not an Avro single-object frame"),
        (b'{"json": true}', DecodeError, "not an Avro single-object frame"),
        (MAGIC + b"\x00" * 8 + b"x", UnknownSchemaError, "unknown schema fingerprint"),
    ],
)
def test_undecodable_input_raises_decode_error_keeping_the_bytes(
    data: bytes | None, error: type[Exception], text: str
) -> None:
    codec = Codec()
    register_builtin(codec)
    with pytest.raises(error, match=text) as info:
        codec.decode(data)
    assert isinstance(info.value, DecodeError)
    assert info.value.raw == data


def test_truncated_and_padded_frames_are_decode_errors() -> None:
    codec = Codec()
    env_schema, _ = register_builtin(codec)
    frame = codec.encode(env_schema, Envelope(id="a", task="t", queue="q", args=b"").to_avro())
    with pytest.raises(DecodeError, match="corrupt"):
        codec.decode(frame[:-3])
    with pytest.raises(DecodeError, match="trailing bytes"):
        codec.decode(frame + b"\x00\x00")


def test_a_frame_of_another_schema_is_refused_when_one_is_expected() -> None:
    codec = Codec()
    env_schema, result_schema = register_builtin(codec)
    frame = codec.encode(env_schema, Envelope(id="a", task="t", queue="q", args=b"").to_avro())
    with pytest.raises(DecodeError, match=r"expected a streamtasks\.TaskResult frame"):
        codec.decode(frame, expect=result_schema)


def test_encoding_a_record_that_does_not_fit_is_a_schema_error() -> None:
    codec = Codec()
    env_schema, _ = register_builtin(codec)
    with pytest.raises(SchemaError):
        codec.encode(env_schema, {"id": 1})


def test_registering_is_idempotent() -> None:
    codec = Codec()
    assert codec.register(ENVELOPE_SCHEMA) is codec.register(dict(ENVELOPE_SCHEMA))


def test_an_envelope_written_by_the_previous_release_still_decodes() -> None:
    """Events queued before an upgrade (envelope v1, no link_error) run after it."""
    from streamtasks.wire.envelope import OLD_ENVELOPE_SCHEMAS

    codec = Codec()
    current, _ = register_builtin(codec)
    writer = Codec()
    old = writer.register(OLD_ENVELOPE_SCHEMAS[0])
    assert old.fingerprint != current.fingerprint
    record = Envelope(id="t1", task="m.f", queue="default", args=b"\x01").to_avro()
    del record["link_error"]
    frame = writer.encode(old, record)
    schema, out = codec.decode(frame, expect=current)
    assert schema is current
    env = Envelope.from_avro(out)
    assert (env.id, env.args, env.link_error) == ("t1", b"\x01", ())


def test_an_old_version_that_cannot_resolve_is_refused_at_registration() -> None:
    codec = Codec()
    current = codec.register(
        {"type": "record", "name": "R", "fields": [{"name": "a", "type": "int"}]}
    )
    older = {"type": "record", "name": "R", "fields": [{"name": "b", "type": "int"}]}
    with pytest.raises(SchemaError, match=r"lacks fields \['a'\]"):
        codec.register_old(older, current)
