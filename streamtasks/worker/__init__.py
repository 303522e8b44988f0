"""The consuming side: the poll loop (:mod:`.worker`) with its rebalance callbacks and shutdown
drain (:mod:`.rebalance`), stop signals (:mod:`.stopsignals`), partition state
(:mod:`.partitions`), output producing (:mod:`.outputs`) and the clients of a run
(:mod:`.session`); running tasks
(:mod:`.executor`), their outcomes (:mod:`.outcomes`) and workflow continuation
(:mod:`.continuation`); chords, flow control, offset tracking, the hooks a worker calls at each
step of a record's life (:mod:`.hooks`, the extension point), the multi-process supervisor
and the pools a task runs in (:mod:`.pools`).

``streamtasks.worker.Worker`` is the public path of the worker class.
"""

from streamtasks.worker.hooks import WorkerHooks, WorkerStats
from streamtasks.worker.worker import Worker

__all__ = ["Worker", "WorkerHooks", "WorkerStats"]
