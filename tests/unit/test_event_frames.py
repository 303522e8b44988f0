"""The hand-written task event frames and batches are byte for byte what fastavro writes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streamtasks.wire import headers as hdr
from streamtasks.wire.envelope import ErrorInfo
from streamtasks.wire.event_frames import AttemptFrames, batch_frame
from streamtasks.wire.events import (
    KIND_TASK_BATCH,
    EventDecodeError,
    TaskEventType,
    decode_event,
    decode_events,
    encode_task_event,
    encode_task_event_batch,
)

_INT32 = st.integers(-(2**31), 2**31 - 1)
_INT64 = st.integers(-(2**63), 2**63 - 1)
_TEXT = st.text(max_size=300)  # lengths past one varint byte, any code point


@given(
    task_id=_TEXT,
    task=_TEXT,
    queue=_TEXT,
    attempt=_INT32,
    worker_id=st.none() | _TEXT,
    partition=st.none() | _INT32,
    offset=st.none() | _INT64,
    kind=st.sampled_from(TaskEventType),
    timestamp=_INT64,
    runtime_ms=st.none() | st.floats(allow_nan=False),
)
def test_a_frame_equals_the_fastavro_encoding_of_the_same_event(
    task_id: str,
    task: str,
    queue: str,
    attempt: int,
    worker_id: str | None,
    partition: int | None,
    offset: int | None,
    kind: TaskEventType,
    timestamp: int,
    runtime_ms: float | None,
) -> None:
    # Given one attempt's shared fields
    frames = AttemptFrames(task_id, task, queue, attempt, worker_id, partition, offset)
    # When one of its events is framed
    frame = frames.frame(kind, timestamp, runtime_ms)
    # Then the bytes are fastavro's, and decode to the event
    event = frames.event(kind, timestamp, runtime_ms)
    assert frame == encode_task_event(event)
    assert decode_event(frame) == event


def test_an_event_with_an_error_is_framed_by_fastavro_and_keeps_the_error() -> None:
    frames = AttemptFrames("t-1", "mod.add", "default", 3, "w-1", 0, 7)
    error = ErrorInfo("ValueError", "bad ünïcode", "Traceback ...")
    frame = frames.frame(TaskEventType.FAILED, 1_700_000_000_000, 12.5, error)
    decoded = decode_event(frame)
    assert decoded == frames.event(TaskEventType.FAILED, 1_700_000_000_000, 12.5, error)
    assert decoded.error == error  # type: ignore[union-attr]


@given(items=st.lists(st.binary(max_size=300), max_size=200))
def test_a_batch_frame_equals_the_fastavro_encoding_of_the_same_batch(items: list[bytes]) -> None:
    # Given any item bytes (lengths and counts past one varint byte, the empty batch too)
    # Then the hand-written batch is fastavro's, byte for byte
    assert batch_frame(items) == encode_task_event_batch(items)


def test_a_batch_decodes_into_its_events_in_order() -> None:
    # Given the frames of two attempts (one with an error: the fastavro path)
    one = AttemptFrames("t-1", "mod.add", "default", 1, "w-1", 0, 7)
    two = AttemptFrames("t-2", "mod.add", "q2", 2, "w-1", 3, 9)
    error = ErrorInfo("ValueError", "bad", "Traceback ...")
    steps = [
        (one, TaskEventType.RECEIVED, 1, None, None),
        (one, TaskEventType.STARTED, 2, None, None),
        (two, TaskEventType.RECEIVED, 3, None, None),
        (one, TaskEventType.SUCCEEDED, 4, 2.0, None),
        (two, TaskEventType.DEAD, 5, None, error),
    ]
    value = batch_frame([f.frame(k, ts, rt, err) for f, k, ts, rt, err in steps])
    # When it is read with its kind header, or by fingerprint alone
    headers = [(hdr.KIND, KIND_TASK_BATCH.encode())]
    expected = [f.event(k, ts, rt, err) for f, k, ts, rt, err in steps]
    # Then it expands into the events, in the order they were written
    assert decode_events(value, headers) == expected
    assert decode_events(value) == expected
    # and a reader of single events is told to expand it, not handed a wrong event
    with pytest.raises(EventDecodeError, match="decode_events"):
        decode_event(value, headers)


def test_a_batch_with_an_item_that_is_not_a_task_event_is_an_error_with_that_item() -> None:
    good = AttemptFrames("t-1", "mod.add", "default", 1, None, None, None)
    value = batch_frame([good.frame(TaskEventType.RECEIVED, 1), b"not a frame"])
    with pytest.raises(EventDecodeError) as caught:
        decode_events(value)
    assert caught.value.raw == b"not a frame"


def test_a_single_event_and_a_heartbeat_decode_into_one_event_each() -> None:
    frames = AttemptFrames("t-1", "mod.add", "default", 1, None, None, None)
    event = frames.event(TaskEventType.SENT, 1)
    assert decode_events(encode_task_event(event)) == [event]
