"""release_freed_heap: freed C-heap pages a look-up scan leaves behind go back to the OS."""

from __future__ import annotations

import sys
import threading

import pytest

from streamtasks.recall import _malloc_trim, release_freed_heap


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or _malloc_trim() is None, reason="needs glibc"
)
def test_freed_fragmented_memory_of_another_thread_is_returned() -> None:
    # Given ~200 MB allocated on another thread (its own malloc arena, as librdkafka's and a
    # scan's reader are) and freed, except every 64th block, so nothing is trimmed by itself
    kept: list[bytes] = []

    def allocate() -> None:
        blocks = [bytes(4000) for _ in range(50_000)]
        kept.extend(blocks[::64])

    worker = threading.Thread(target=allocate)
    worker.start()
    worker.join()
    before = _rss_mib()
    # When the freed heap is released
    release_freed_heap()
    # Then most of it left the process, while what is alive stays readable
    assert _rss_mib() < before - 100, (before, _rss_mib())
    assert len(kept) == 782 and all(len(b) == 4000 for b in kept)
