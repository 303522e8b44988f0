"""Publishing task records: envelopes in, records on the right topic, their Deliveries out.

:meth:`Publisher.publish` is the one way a task is sent — ``Task.apply_async``, chains and chords
all call it (through ``app.publisher``) and wrap the :class:`~streamtasks.kafka.delivery.Delivery`
it returns in their own :class:`~streamtasks.asyncresult.AsyncResult`;
:meth:`Publisher.publish_many` is the same for a batch (``Task.send_many``).

Invariants: the task id is registered with the process's result listener *before* the record is
produced (so its result cannot be missed); a record over ``max_payload_bytes`` is refused before
it reaches the producer — in a batch, before *any* record of the batch is produced; a task due
later (``eta``) goes to the retry tier covering the delay, with ``st-not-before``, instead of the
task topic; with ``App(events=True)`` a ``SENT`` event follows each task record to
``{ns}.events``; a record carries a ``traceparent`` when there is a trace to continue (the
caller's own header, else the active OpenTelemetry span's, else the running task's: see
:mod:`streamtasks.tracing`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from streamtasks.errors import ArgumentError
from streamtasks.kafka.delivery import Delivery
from streamtasks.retry import tier_for
from streamtasks.tracing import outgoing
from streamtasks.wire.envelope import Envelope, now_ms
from streamtasks.wire.events import TaskEvent, TaskEventType, event_record
from streamtasks.wire.headers import NOT_BEFORE, TRACEPARENT, task_headers_of
from streamtasks.wire.topics import Headers, events_topic, record_size, retry_topic, task_topic

if TYPE_CHECKING:
    from streamtasks.app import App
    from streamtasks.kafka.ledger import Outgoing

__all__ = ["Publisher"]


class _Current:
    """The default of :meth:`Publisher.record`'s ``trace``: look up the current trace."""


_CURRENT = _Current()


class Publisher:
    """Sends the task records of one :class:`~streamtasks.app.App`."""

    def __init__(self, app: App) -> None:
        self._app = app

    def publish(self, envelope: Envelope, *, key: str | bytes | None, headers: Headers) -> Delivery:
        """Produce ``envelope`` (keyed by ``key``, else its id; ``headers`` after the standard
        ones) and return the acknowledgement to wait on."""
        return self.publish_avro(envelope.to_avro(), key=key, headers=headers)

    def publish_avro(
        self, avro: dict[str, Any], *, key: str | bytes | None, headers: Headers
    ) -> Delivery:
        """:meth:`publish` of an envelope in its Avro form (``Envelope.to_avro()``, or
        :func:`~streamtasks.wire.envelope.new_envelope_avro`): a send's path."""
        app = self._app
        task_id = avro["id"]
        app.results_listener().expect(task_id)
        topic, payload, record_key, all_headers = self._record(avro, key, headers, _CURRENT)
        # a batch of one: the record's ledger entry is its Delivery (one object, no closure)
        (delivery,) = app.produce_many(
            [(topic, payload, record_key, all_headers, f"task {task_id}")]
        )
        if app.events:
            _sent(app, task_id, avro["task"], avro["queue"], avro["attempt"])
        return delivery

    def publish_many(
        self, items: Sequence[tuple[dict[str, Any], str | bytes | None, Headers]]
    ) -> list[Delivery]:
        """Produce a batch of ``(envelope, key, headers)``, each envelope in its Avro form
        (``Envelope.to_avro()``, or :func:`~streamtasks.wire.envelope.new_envelope_avro`); all
        are encoded and checked first, so a record that is refused (:class:`ArgumentError`
        naming its index) leaves nothing produced. Returns one acknowledgement per item, in
        order."""
        records: list[Outgoing] = []
        trace = outgoing()  # one caller, one context: the same trace for the whole batch
        for i, (avro, key, headers) in enumerate(items):
            try:
                records.append((*self._record(avro, key, headers, trace), f"task {avro['id']}"))
            except ArgumentError as exc:
                raise ArgumentError(f"item {i}: {exc} (nothing of this batch was sent)") from exc
        self._app.results_listener().expect_many([avro["id"] for avro, _, _ in items])
        deliveries = self._app.produce_many(records)
        if self._app.events:
            for avro, _, _ in items:
                _sent(self._app, avro["id"], avro["task"], avro["queue"], avro["attempt"])
        return deliveries

    def record(
        self,
        envelope: Envelope,
        *,
        key: str | bytes | None,
        headers: Headers,
        trace: str | _Current | None = _CURRENT,
    ) -> tuple[str, bytes, str | bytes, Headers]:
        """The ``(topic, payload, key, headers)`` of ``envelope``'s record, checked;
        ``trace``: the traceparent to carry (default: the caller's current one)."""
        return self._record(envelope.to_avro(), key, headers, trace)

    def _record(
        self,
        avro: dict[str, Any],
        key: str | bytes | None,
        headers: Headers,
        trace: str | _Current | None,
    ) -> tuple[str, bytes, str | bytes, Headers]:
        app = self._app
        payload = app.codec.encode(app.envelope_schema, avro)
        task, task_id, queue, eta = avro["task"], avro["id"], avro["queue"], avro["eta"]
        record_key = key if key is not None else task_id
        size = record_size(payload, record_key, headers)
        if size > app.settings.max_payload_bytes:
            raise ArgumentError(
                f"task {task!r}: the message is {size} bytes, over "
                f"max_payload_bytes={app.settings.max_payload_bytes}; pass large data by "
                "reference (e.g. a URL or object key) or raise max_payload_bytes"
            )
        ns = app.settings.namespace
        std: Headers = task_headers_of(task, task_id, avro["attempt"])
        delay = 0.0 if eta is None else (eta - now_ms()) / 1000
        if delay > 0:
            # Delayed: held in the retry tier that covers the delay until it is due.
            topic = retry_topic(ns, queue, tier_for(delay, app.settings.retry_tiers))
            std.append((NOT_BEFORE, str(eta).encode()))
        else:
            topic = task_topic(ns, queue)
        if not any(name == TRACEPARENT for name, _ in headers):
            if isinstance(trace, _Current):
                trace = outgoing()
            if trace is not None:
                std.append((TRACEPARENT, trace.encode()))
        if headers:
            std.extend(headers)
        return topic, payload, record_key, std


def _sent(app: App, task_id: str, task: str, queue: str, attempt: int) -> None:
    """The SENT event of a task just produced (informational: the send does not wait)."""
    event = TaskEvent(
        task_id=task_id, task=task, queue=queue, type=TaskEventType.SENT, attempt=attempt
    )
    key, value, headers = event_record(event)
    topic = events_topic(app.settings.namespace)
    app.produce(topic, value, key=key, headers=headers, label=f"SENT event of {task_id}")
