"""streamtasks: Kafka-native distributed task processing for Python.

Tasks are typed functions; each call is an Avro-encoded event on a partitioned Kafka topic,
processed by workers in a consumer group with at-least-once delivery.
"""

from streamtasks.app import App
from streamtasks.asyncresult import AsyncResult
from streamtasks.context import TaskContext, current_task
from streamtasks.errors import (
    ArgumentError,
    ConfigError,
    DeliveryError,
    ResultTimeoutError,
    ResultTooLargeError,
    StreamtasksError,
    TaskFailedError,
)
from streamtasks.retry import RetryPolicy
from streamtasks.signals import Reject, Retry
from streamtasks.task import Task
from streamtasks.wire.envelope import TaskStatus
from streamtasks.worker import Worker
from streamtasks.workflows import TaskFailure, chain, chord, group

__all__ = [
    "App",
    "ArgumentError",
    "AsyncResult",
    "ConfigError",
    "DeliveryError",
    "Reject",
    "ResultTimeoutError",
    "ResultTooLargeError",
    "Retry",
    "RetryPolicy",
    "StreamtasksError",
    "Task",
    "TaskContext",
    "TaskFailedError",
    "TaskFailure",
    "TaskStatus",
    "Worker",
    "chain",
    "chord",
    "current_task",
    "group",
]

__version__ = "0.1.0"
