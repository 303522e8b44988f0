"""Task ids (one at a time, and in bulk) are version-4 UUIDs in uuid4().hex form, all distinct."""

from __future__ import annotations

import itertools
import uuid

from streamtasks.wire.ids import new_task_id, new_task_ids


def test_ids_are_distinct_version_4_uuids_in_hex_form_across_chunks() -> None:
    ids = list(itertools.islice(new_task_ids(chunk=7), 100))  # 15 chunks, the last one cut
    assert len(set(ids)) == 100
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.hex == text and len(text) == 32
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122


def test_one_id_at_a_time_is_a_distinct_version_4_uuid_in_hex_form() -> None:
    ids = [new_task_id() for _ in range(2000)]
    assert len(set(ids)) == 2000
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.hex == text and len(text) == 32
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
