"""The consuming side: the poll loop (:mod:`.worker`), running tasks and their outcomes
(:mod:`.executor`), chords, flow control, offset tracking, the hooks a worker calls at each
step of a record's life (:mod:`.hooks`, the extension point), the multi-process supervisor
and the pools a task runs in (:mod:`.pools`).

``streamtasks.worker.Worker`` is the public path of the worker class.
"""

from streamtasks.worker.hooks import WorkerHooks, WorkerStats
from streamtasks.worker.worker import Worker

__all__ = ["Worker", "WorkerHooks", "WorkerStats"]
