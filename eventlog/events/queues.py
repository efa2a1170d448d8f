"""Queue events (aggregate kind `queue`): the control half of Queues.

Messages are tenant data on Kafka data topics (services/queues), never on the
control log. Here: a queue came or went, and which worker consumes it with
which settings. A queue has at most one consumer (as on Cloudflare); its
settings are events of the queue's aggregate, not of the worker's versions, so
the consumer follows the worker's active version and `wdl queues consumer
add|remove` changes it without a deploy (docs/queues.md).
"""

from __future__ import annotations

from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.errors import InvalidEvent
from eventlog.events.resources import ResourceDeletion, ResourceEvent
from eventlog.validation import MAX_DELAY_S, queue_name

MAX_BATCH_SIZE = 100
MAX_BATCH_TIMEOUT_S = 60
MAX_RETRIES = 100
MAX_CONCURRENCY = 250


def _in_range(field: str, value: object, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidEvent(field, f"{value!r} is not an integer in [{low}, {high}]")
    return value


class _QueueEvent(ResourceEvent, frozen=True, kw_only=True):
    KIND: ClassVar[AggregateKind] = AggregateKind.QUEUE

    def validate_name(self) -> None:
        queue_name("name", self.name)


class QueueCreated(_QueueEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "queue.created"

    delivery_delay: int = 0
    """Seconds every message waits before delivery unless its send names another delay."""

    def validate(self) -> None:
        super().validate()
        _in_range("delivery_delay", self.delivery_delay, 0, MAX_DELAY_S)


class QueueDeleted(ResourceDeletion, _QueueEvent, frozen=True, kw_only=True):
    """The queue, its consumer and its undelivered messages are gone."""

    TYPE: ClassVar[str] = "queue.deleted"


class QueueConsumerSet(_QueueEvent, frozen=True, kw_only=True):
    """`worker` (of the queue's namespace) consumes queue `name` with these settings.

    Setting it again for the same worker replaces the settings; another worker
    is refused while one consumes the queue (`consumer_exists`).
    """

    TYPE: ClassVar[str] = "queue.consumer_set"

    worker: str
    max_batch_size: int = 10
    max_batch_timeout: int = 5
    """Seconds the consumer waits to fill a batch before delivering a smaller one."""
    max_retries: int = 3
    retry_delay: int = 0
    dead_letter_queue: str = ""
    max_concurrency: int = 0
    """Batches of this queue in flight at once; 0: as many as the consumer replicas run."""

    def validate(self) -> None:
        super().validate()
        v.name("worker", self.worker)
        _in_range("max_batch_size", self.max_batch_size, 1, MAX_BATCH_SIZE)
        _in_range("max_batch_timeout", self.max_batch_timeout, 0, MAX_BATCH_TIMEOUT_S)
        _in_range("max_retries", self.max_retries, 0, MAX_RETRIES)
        _in_range("retry_delay", self.retry_delay, 0, MAX_DELAY_S)
        _in_range("max_concurrency", self.max_concurrency, 0, MAX_CONCURRENCY)
        if self.dead_letter_queue:
            queue_name("dead_letter_queue", self.dead_letter_queue)
            if self.dead_letter_queue == self.name:
                raise InvalidEvent("dead_letter_queue", "a queue cannot be its own "
                                                        "dead-letter queue")


class QueueConsumerRemoved(_QueueEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "queue.consumer_removed"

    worker: str

    def validate(self) -> None:
        super().validate()
        v.name("worker", self.worker)


QueueEvent = QueueCreated | QueueDeleted | QueueConsumerSet | QueueConsumerRemoved

CLASSES: tuple[type[QueueEvent], ...] = (QueueCreated, QueueDeleted, QueueConsumerSet,
                                         QueueConsumerRemoved)
