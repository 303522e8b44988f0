"""W3C trace context from send() through the task to the next chain step (issue 15, part 5).

Given a worker, when a chain is sent with a ``traceparent`` — from an OpenTelemetry SDK span
active in the sender, or as a plain header — then the task sees it (``current_task()``) and so
does the chain's next step (and a chord's callback); a malformed one is dropped and the task
still succeeds.
"""

from __future__ import annotations

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from streamtasks import App, chain, chord, group
from tests.integration.conftest import StartWorkers

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

PLAIN = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _sdk_tracer() -> trace.Tracer:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        trace.set_tracer_provider(TracerProvider())
    return trace.get_tracer("test-sender")


def test_a_traceparent_reaches_the_task_and_the_next_chain_step(
    app: App, start_workers: StartWorkers
) -> None:
    start_workers(1)
    t = app.tasks
    # a plain header
    plain = chain(t["traced"].s("a"), t["traced_next"].s()).apply_async(
        headers={"traceparent": PLAIN}
    )
    # the span active in the sender (the worker has no SDK: it carries the context unchanged)
    with _sdk_tracer().start_as_current_span("web request") as span:
        ctx = span.get_span_context()
        active = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"
        from_span = chain(t["traced"].s("b"), t["traced_next"].s()).apply_async()
        members = group(t["traced"].s("m1"), t["traced"].s("m2"))
        joined = chord(members, t["traced_all"].s()).apply_async()
    # a malformed one, and none at all
    bad = t["traced"].apply_async(("c",), headers={"traceparent": "00-NOT-A-TRACE-01"})
    none = t["traced"].send("d")
    assert plain.get(timeout=60) == [PLAIN, PLAIN]
    assert from_span.get(timeout=60) == [active, active]
    assert joined.get(timeout=60) == [active, active, active]  # members, then the callback
    assert bad.get(timeout=60) == ""
    assert none.get(timeout=60) == ""
