"""The cyclic garbage collector's settings while a worker runs.

A worker makes a few dozen short-lived objects a task (records, outcomes, the decoded call,
its result), almost all freed at once by reference counting. CPython's collector still runs
on them: a young-generation pass every 700 net allocations, and now and then a full pass over
every object the process holds (the imported modules, parsed schemas, clients), which is most
of its cost. Measured with ``bench/worker_path.py`` (``gc.callbacks`` timing, no broker) that
was 4.9-8.3 µs of a 37-65 µs task, 11-13 % of the worker's own CPU (``perf`` showed the
collector's C functions at ~11 %); with the tuning, no collection ran in 40,000 tasks.

While a worker runs, :func:`tuned_gc` therefore does what long-running Python servers do
with the collector (``gc.freeze``, a larger first threshold):

- collects once, then freezes what exists: the start-up heap moves to the permanent
  generation, which full passes skip;
- raises the young-generation threshold to :data:`GEN0_THRESHOLD` (the other two stay), so
  the per-task objects are freed by reference counting before a pass needs to look at them.

The collector stays enabled: cyclic garbage a task leaves (an exception's traceback, for
one) is still collected, a little later. Objects frozen at the start are not collected
while the worker runs, even if they become garbage; everything is as before once the last
worker of the process stopped (thresholds restored, heap unfrozen). Several workers in one
process share one tuning (a count of the running ones). ``Worker(gc_tuning=False)`` /
``streamtasks worker --no-gc-tuning`` leave the collector alone.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["GEN0_THRESHOLD", "tuned_gc"]

#: the young-generation threshold while a worker runs (CPython's default is 700)
GEN0_THRESHOLD = 10_000

_lock = threading.Lock()
_running = 0
_saved: tuple[int, int, int] | None = None


@contextmanager
def tuned_gc(enabled: bool = True) -> Iterator[None]:
    """The collector tuned for a worker while the block runs (nothing if not ``enabled``)."""
    if not enabled:
        yield
        return
    _enter()
    try:
        yield
    finally:
        _leave()


def _enter() -> None:
    global _running, _saved
    with _lock:
        if _running == 0:
            _saved = gc.get_threshold()
            gc.collect()
            gc.freeze()
            gen0, gen1, gen2 = _saved
            gc.set_threshold(max(gen0, GEN0_THRESHOLD), gen1, gen2)
        _running += 1


def _leave() -> None:
    global _running, _saved
    with _lock:
        _running -= 1
        if _running == 0 and _saved is not None:
            gc.set_threshold(*_saved)
            _saved = None
            gc.unfreeze()
