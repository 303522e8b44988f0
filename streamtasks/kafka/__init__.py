"""The confluent-kafka boundary: client construction and admin calls (:mod:`.clients`), reading
topics as a tool does and following them (:mod:`.reader`, with ``TopicTail``), and producing
with acknowledgements (:mod:`.delivery`).

Outside this package (and the worker's poll loop, the embedded broker and the pytest plugin)
nothing imports ``confluent_kafka``: the client types other modules name are re-exported here
(ruff's TID251 enforces it).
"""

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

__all__ = [
    "OFFSET_BEGINNING",
    "Consumer",
    "KafkaError",
    "KafkaException",
    "Message",
    "Producer",
    "TopicPartition",
]
