"""The streamtasks exception hierarchy.

Every error the library raises derives from :class:`StreamtasksError`; third-party errors
(librdkafka, fastavro) are translated at the boundary where they occur
(``raise ConfigError(...) from exc``) so callers never need to import those libraries.

    StreamtasksError
    ├── ConfigError            bad settings; raised at start-up with a fix-it message
    ├── SchemaError            a task signature or type hint that cannot be mapped to Avro
    ├── ArgumentError          arguments that do not match a task's signature (send time)
    ├── DecodeError            bytes that cannot be decoded; keeps the raw record for the DLQ
    │   └── UnknownSchemaError a well-formed frame whose schema fingerprint is not known
    ├── UnknownTaskError       an envelope naming a task this process does not know
    ├── BrokerError            the broker is unreachable or refused an operation
    │   ├── BrokerNotFoundError  no embedded broker binary could be located
    │   └── DeliveryError        a produced task was not acknowledged: it was NOT enqueued
    ├── ResultTooLargeError    a task's result is over ``max_payload_bytes`` (the task fails)
    ├── TaskFailedError        raised by ``AsyncResult.get`` when the task failed
    └── ResultTimeoutError     ``AsyncResult.get`` gave up waiting (also a ``TimeoutError``)

Control signals raised inside tasks (``Retry``, ``Reject``) are not errors and live in
``streamtasks.signals``.
"""

from __future__ import annotations

__all__ = [
    "ArgumentError",
    "BrokerError",
    "BrokerNotFoundError",
    "ConfigError",
    "DecodeError",
    "DeliveryError",
    "ResultTimeoutError",
    "ResultTooLargeError",
    "SchemaError",
    "StreamtasksError",
    "TaskFailedError",
    "UnknownSchemaError",
    "UnknownTaskError",
]


class StreamtasksError(Exception):
    """Root of every error raised by streamtasks."""


class ConfigError(StreamtasksError):
    """A configuration mistake. The message says what is wrong and how to fix it."""


class SchemaError(StreamtasksError):
    """A task signature or type hint that cannot be mapped to an Avro schema."""


class ArgumentError(StreamtasksError, TypeError):
    """Arguments that do not match a task's signature or declared types."""


class DecodeError(StreamtasksError):
    """Bytes that could not be decoded. ``raw`` keeps the original payload for the DLQ."""

    def __init__(self, message: str, raw: bytes | None = None) -> None:
        super().__init__(message)
        self.raw = raw


class UnknownSchemaError(DecodeError):
    """A single-object-encoded frame whose schema fingerprint no known schema has."""


class UnknownTaskError(StreamtasksError):
    """An envelope that names a task this process has not registered."""


class BrokerError(StreamtasksError):
    """The broker is unreachable, or refused an operation."""


class BrokerNotFoundError(BrokerError):
    """No embedded broker binary could be located."""


class ResultTooLargeError(StreamtasksError):
    """A task returned a value whose result record is over ``max_payload_bytes``: the task
    ends in FAILURE with this error (``AsyncResult.get`` raises it as a
    :class:`TaskFailedError` whose ``error_type`` is ``"ResultTooLargeError"``)."""


class TaskFailedError(StreamtasksError):
    """The awaited task ended in failure; carries the remote error's type, message, traceback."""

    def __init__(
        self, task_id: str, error_type: str, message: str, traceback: str | None = None
    ) -> None:
        super().__init__(f"{error_type}: {message}")
        self.task_id = task_id
        self.error_type = error_type
        self.error_message = message
        self.remote_traceback = traceback


class ResultTimeoutError(StreamtasksError, TimeoutError):
    """``AsyncResult.get`` did not see a final result within its timeout."""


class DeliveryError(BrokerError):
    """A task (or other record) the broker never acknowledged: it was NOT enqueued.

    ``task_ids`` names the tasks concerned (empty for records that are not tasks)."""

    def __init__(self, message: str, task_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.task_ids = task_ids
