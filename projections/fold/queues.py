"""Queues (aggregate kind `queue`): the shared resource rules plus the queue's consumer.

A queue's record in `res:queue:{ns}` carries its `delivery_delay` and its
`consumer` (null or the settings); `queue_consumers` ("ns/queue" -> settings
with the worker) is what the consumer service reads to know what to consume.
A consumer's worker must exist, and so must its dead-letter queue; a queue that
is some consumer's dead-letter queue is in use (deleted only with force).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.resources import ResourceRules, ResourceState


@dataclass(slots=True)
class QueueState:
    delivery_delay: int = 0
    consumer: dict[str, Any] | None = None


def consumer_settings(e: ev.QueueConsumerSet) -> dict[str, Any]:
    return {"worker": e.worker, "max_batch_size": e.max_batch_size,
            "max_batch_timeout": e.max_batch_timeout, "max_retries": e.max_retries,
            "retry_delay": e.retry_delay, "dead_letter_queue": e.dead_letter_queue,
            "max_concurrency": e.max_concurrency}


class QueueRules(ResourceRules):
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.QueueCreated: "_queue_created",
        ev.QueueDeleted: "_queue_deleted",
        ev.QueueConsumerSet: "_queue_consumer_set",
        ev.QueueConsumerRemoved: "_queue_consumer_removed",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.QUEUE: "_queue_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.queues: dict[tuple[str, str], QueueState] = {}

    def _queue_version(self, aggregate_id: str) -> int:
        return self._resource_version(AggregateKind.QUEUE, aggregate_id)

    def _queue_render(self, ns: str, name: str, out: Changes) -> None:
        state = self.resources[("queue", ns, name)]
        queue = self.queues[(ns, name)]
        out.set(keys.resources("queue", ns), name, dumps({
            "created_at": state.created_at, "created_by": state.created_by,
            "version": state.version, "delivery_delay": queue.delivery_delay,
            "consumer": queue.consumer}))
        if queue.consumer is None:
            out.delete(keys.QUEUE_CONSUMERS, f"{ns}/{name}")
        else:
            out.set(keys.QUEUE_CONSUMERS, f"{ns}/{name}", dumps(queue.consumer))

    def _queue_live(self, ns: str, name: str) -> tuple[ResourceState, QueueState]:
        state = self.resources.get(("queue", ns, name))
        if state is None or not state.exists:
            raise Reject("resource_not_found", f"{self._label('queue', ns, name)} does not exist")
        return state, self.queues[(ns, name)]

    def _queue_created(self, e: ev.QueueCreated, env: Envelope, out: Changes) -> int:
        version = self._resource_created(e, env, out)
        self.queues[(e.namespace, e.name)] = QueueState(delivery_delay=e.delivery_delay)
        self._queue_render(e.namespace, e.name, out)
        return version

    def _queue_deleted(self, e: ev.QueueDeleted, env: Envelope, out: Changes) -> int:
        if not e.force:
            users = sorted(q for (ns, q), s in self.queues.items()
                           if ns == e.namespace and q != e.name and s.consumer is not None
                           and s.consumer["dead_letter_queue"] == e.name)
            if users:
                raise Reject("resource_in_use",
                             f"{self._label('queue', e.namespace, e.name)} is the dead-letter "
                             f"queue of {', '.join(users)}; change their consumers first, or "
                             "delete with force")
        version = self._resource_deleted(e, env, out)
        self.queues.pop((e.namespace, e.name), None)
        out.delete(keys.QUEUE_CONSUMERS, f"{e.namespace}/{e.name}")
        return version

    def _queue_consumer_set(self, e: ev.QueueConsumerSet, env: Envelope, out: Changes) -> int:
        state, queue = self._queue_live(e.namespace, e.name)
        worker = self.workers.get((e.namespace, e.worker))
        if worker is None or worker.deleted or worker.purged:
            raise Reject("worker_not_found",
                         f"worker {e.worker!r} does not exist in namespace {e.namespace}")
        if queue.consumer is not None and queue.consumer["worker"] != e.worker:
            raise Reject("consumer_exists",
                         f"{self._label('queue', e.namespace, e.name)} is already consumed by "
                         f"worker {queue.consumer['worker']!r}; remove that consumer first")
        if e.dead_letter_queue:
            self._queue_live(e.namespace, e.dead_letter_queue)
        queue.consumer = consumer_settings(e)
        state.version += 1
        self._queue_render(e.namespace, e.name, out)
        return state.version

    def _queue_consumer_removed(self, e: ev.QueueConsumerRemoved, env: Envelope,
                                out: Changes) -> int:
        state, queue = self._queue_live(e.namespace, e.name)
        if queue.consumer is None or queue.consumer["worker"] != e.worker:
            raise Reject("consumer_not_found", f"worker {e.worker!r} does not consume "
                         f"{self._label('queue', e.namespace, e.name)}")
        queue.consumer = None
        state.version += 1
        self._queue_render(e.namespace, e.name, out)
        return state.version
