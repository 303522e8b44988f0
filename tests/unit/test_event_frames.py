"""The hand-written task event frames are byte for byte what fastavro writes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streamtasks.wire.envelope import ErrorInfo
from streamtasks.wire.event_frames import AttemptFrames
from streamtasks.wire.events import TaskEventType, decode_event, encode_task_event

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
