"""streamtasks: Kafka-native distributed task processing for Python.

Tasks are typed functions; each call is an Avro-encoded event on a partitioned Kafka topic,
processed by workers in a consumer group with at-least-once delivery.
"""

from streamtasks.app import App
from streamtasks.asyncresult import AsyncResult
from streamtasks.envelope import TaskStatus
from streamtasks.errors import (
    ArgumentError,
    ConfigError,
    ResultTimeoutError,
    StreamtasksError,
    TaskFailedError,
)
from streamtasks.task import Task
from streamtasks.worker import Worker

__all__ = [
    "App",
    "ArgumentError",
    "AsyncResult",
    "ConfigError",
    "ResultTimeoutError",
    "StreamtasksError",
    "Task",
    "TaskFailedError",
    "TaskStatus",
    "Worker",
]

__version__ = "0.1.0"
