"""In-process cost of building one task's lifecycle events (no broker), per task.

    python bench/task_events.py [--n 20000] [--repeats 5]

Times :meth:`streamtasks.worker.events.TaskEvents.frames` on a SUCCESS outcome of a no-op task
(RECEIVED, STARTED, SUCCEEDED); ``batched``: that plus what the worker's output stage adds
per task — the frames joining the batch, and a hundredth of one ``TaskEventBatch`` record of
100 tasks' events (``batch_frame``) — i.e. the whole per-task Python cost of events on except
the one produce call per batch; and, interleaved with them so load changes hit all alike, the
way it was done before the hand-written frames: decode the result record back from its bytes
and encode each event with fastavro (``event_record``). Prints the best of ``--repeats`` as
µs per task (best: the least disturbed by the shared machine).
"""

from __future__ import annotations

import argparse
import timeit

from streamtasks import App
from streamtasks.wire.envelope import Envelope, ResultRecord, TaskStatus
from streamtasks.wire.event_frames import batch_frame
from streamtasks.wire.events import event_record
from streamtasks.worker.events import TaskEvents
from streamtasks.worker.outcomes import Outcome, Output, Record, Results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    app = App("bench", namespace="ns", bootstrap_servers="127.0.0.1:1")
    rec = Record("ns.tasks.default", 2, 123_456, b"k", b"v", [])
    env = Envelope(id="0" * 32, task="bench.noop", queue="default", args=b"", attempt=1)
    result = Results(app, "host-1234-abcdef").result_output(env, TaskStatus.SUCCESS, 1, b"", None)
    outcome = Outcome("success", (result,))
    events = TaskEvents(app, "host-1234-abcdef")

    def now() -> None:
        events.frames(rec, 900, outcome)

    batch: list[bytes] = []

    def batched() -> None:  # frames, into the batch; every 100 tasks one batch record
        batch.extend(events.frames(rec, 900, outcome))
        if len(batch) >= 300:
            batch_frame(batch)
            batch.clear()

    def before() -> None:  # the result decoded again, each event through fastavro
        assert result.value is not None
        _, raw = app.codec.decode(result.value, expect=app.result_schema)
        done = ResultRecord.from_avro(raw)
        for e in events.events(rec, 900, done):
            key, value, headers = event_record(e)
            Output("ns.events", key, value, headers)

    best: dict[str, float] = {"now": float("inf"), "batched": float("inf"), "before": float("inf")}
    for _ in range(args.repeats):
        for name, fn in (("now", now), ("batched", batched), ("before", before)):
            best[name] = min(best[name], timeit.timeit(fn, number=args.n) / args.n)
    for name, seconds in best.items():
        print(f"{name:>7}: {seconds * 1e6:6.2f} us per task (best of {args.repeats} x {args.n})")


if __name__ == "__main__":
    main()
