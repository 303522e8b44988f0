"""The consuming side: the poll loop (:mod:`.worker`), running tasks and their outcomes
(:mod:`.executor`), chords, flow control, offset tracking, the multi-process supervisor and
the pools a task runs in (:mod:`.pools`).

``streamtasks.worker.Worker`` is the public path of the worker class.
"""

from streamtasks.worker.worker import Worker, WorkerStats

__all__ = ["Worker", "WorkerStats"]
