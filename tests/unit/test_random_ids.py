"""Bulk task ids are version-4 UUIDs in uuid4().hex's form, all different."""

from __future__ import annotations

import itertools
import uuid

from streamtasks.wire.ids import new_task_ids


def test_ids_are_distinct_version_4_uuids_in_hex_form_across_chunks() -> None:
    ids = list(itertools.islice(new_task_ids(chunk=7), 100))  # 15 chunks, the last one cut
    assert len(set(ids)) == 100
    for text in ids:
        parsed = uuid.UUID(text)
        assert parsed.hex == text and len(text) == 32
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
