"""Where a task's code runs: a thread pool (:mod:`.threads`), an event loop for ``async def``
tasks (:mod:`.aio`) and child processes with hard time limits (:mod:`.processes`)."""
