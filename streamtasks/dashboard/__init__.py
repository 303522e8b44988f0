"""``streamtasks dashboard``: a web dashboard whose history is Kafka.

* :mod:`.aggregates` — the bounded rolling aggregates (pure, thread-safe);
* :mod:`.tails` — background threads tailing the results, task, events and scheduler topics
  and polling the status into the aggregates;
* :mod:`.security` — bind address, token and CSRF rules;
* :mod:`.views` — what each page shows; :mod:`.web` — the Starlette routes and templates;
* :mod:`.server` — wiring it together and serving it with uvicorn.

Needs the ``dashboard`` extra (Starlette, Jinja2, uvicorn):
``pip install 'streamtasks[dashboard]'``.
"""

EXTRA_HINT = "the dashboard needs its extra: pip install 'streamtasks[dashboard]'"

__all__ = ["EXTRA_HINT"]
