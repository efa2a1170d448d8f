"""Fan-out of tail events to subscribers, with bounded memory.

Each subscriber has its own bounded queue of encoded lines. Publishing never
waits: when a subscriber's queue is full the event is dropped *for that
subscriber* and counted, and the subscriber's next read returns a `dropped`
marker with the count first. So one slow client can neither slow the gateway
nor other clients, and memory is at most subscribers * queue size * the
largest event (the gateway bounds an event to ~16 KiB of text).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Callable

from services.fairshare import FairShareMetrics
from services.tail.events import TailEvent
from services.tail.filters import TailFilter

DEFAULT_QUEUE_SIZE = 256
DEFAULT_MAX_SUBSCRIBERS = 128
DEFAULT_MAX_PER_WORKER = 16
# A quarter of the hub: one namespace (8 workers x 16) could otherwise hold every tail
# and leave every other tenant's `wdl tail` at 429.
DEFAULT_MAX_PER_NAMESPACE = 32


class TooManySubscribers(Exception):
    pass


def marker(kind: str, **fields: object) -> bytes:
    """A control line of the stream (`dropped`, `heartbeat`, `connected`, `end`)."""
    return (json.dumps({"type": kind, "ts": int(time.time() * 1000), **fields},
                       separators=(",", ":")) + "\n").encode()


class Subscription:
    def __init__(self, namespace: str, worker: str, filter_: TailFilter, queue_size: int,
                 on_drop: Callable[[int], None] | None = None) -> None:
        self.namespace = namespace
        self.worker = worker
        self.filter = filter_
        self.dropped = 0  # not yet reported to the subscriber
        self.dropped_total = 0
        self.delivered = 0
        self.closed = False
        self._queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=queue_size)
        self._on_drop = on_drop

    def offer(self, line: bytes) -> bool:
        if self.closed:
            return False
        try:
            self._queue.put_nowait(line)
        except asyncio.QueueFull:
            self.dropped += 1
            self.dropped_total += 1
            if self._on_drop is not None:
                self._on_drop(1)
            return False
        self.delivered += 1
        return True

    async def next(self) -> bytes | None:
        """The next line for the subscriber; None once the hub closed the subscription."""
        if self.dropped:
            count, self.dropped = self.dropped, 0
            return marker("dropped", count=count)
        if self.closed:
            return None
        line = await self._queue.get()
        return None if self.closed else line

    def close(self) -> None:
        self.closed = True
        # Wakes a reader blocked in next(); a full queue has no blocked reader.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(b"")

    @property
    def queued(self) -> int:
        return self._queue.qsize()


class TailHub:
    def __init__(self, *, queue_size: int = DEFAULT_QUEUE_SIZE,
                 max_subscribers: int = DEFAULT_MAX_SUBSCRIBERS,
                 max_per_worker: int = DEFAULT_MAX_PER_WORKER,
                 max_per_namespace: int | Callable[[str], int] = DEFAULT_MAX_PER_NAMESPACE,
                 rng: random.Random | None = None,
                 on_drop: Callable[[int], None] | None = None,
                 metrics: FairShareMetrics | None = None) -> None:
        self.queue_size = queue_size
        self.max_subscribers = max_subscribers
        self.max_per_worker = max_per_worker
        # An operator's per-namespace cap plugs in as a callable (NamespaceShares'
        # "tails", `wdl ns limits set --tails N`); a number is every namespace's cap.
        self.max_per_namespace = max_per_namespace
        self._per_namespace: dict[str, int] = {}
        self.rng = rng or random.Random()
        self.on_drop = on_drop
        self.metrics = metrics  # wdl_fairshare_{held,refusals}{engine="tails"}
        self._subs: dict[tuple[str, str], set[Subscription]] = {}
        self._count = 0
        self.closed = False

    @property
    def subscribers(self) -> int:
        return self._count

    def cap(self, namespace: str) -> int:
        """How many tails `namespace` may hold (the default, a quarter of the hub, keeps
        one namespace from taking every tail)."""
        limit = self.max_per_namespace
        return int(limit(namespace) if callable(limit) else limit)

    def held(self, namespace: str) -> int:
        return self._per_namespace.get(namespace, 0)

    def subscribe(self, namespace: str, worker: str,
                  filter_: TailFilter | None = None) -> Subscription:
        if self.closed:
            raise TooManySubscribers("the tail hub is shutting down")
        subs = self._subs.get((namespace, worker), set())
        if self._count >= self.max_subscribers:
            raise TooManySubscribers(f"{self._count} tails are open on this data service "
                                     f"(at most {self.max_subscribers})")
        if len(subs) >= self.max_per_worker:
            raise TooManySubscribers(f"{namespace}/{worker} already has {len(subs)} tails "
                                     f"(at most {self.max_per_worker})")
        mine = self._per_namespace.get(namespace, 0)
        cap = self.cap(namespace)
        if mine >= cap:
            if self.metrics is not None:
                self.metrics.refusals.labels(
                    "tails", self.metrics.namespaces.labels(namespace)).inc()
            raise TooManySubscribers(f"namespace {namespace} already has {mine} tails open "
                                     f"(at most {cap})")
        sub = Subscription(namespace, worker, filter_ or TailFilter(), self.queue_size,
                           self.on_drop)
        self._subs.setdefault((namespace, worker), subs).add(sub)
        self._count += 1
        self._per_namespace[namespace] = mine + 1
        if self.metrics is not None:
            self.metrics.held.labels("tails", self.metrics.namespaces.labels(namespace)).inc()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get((sub.namespace, sub.worker))
        if subs is None or sub not in subs:
            return
        subs.discard(sub)
        self._count -= 1
        if self.metrics is not None:
            self.metrics.held.labels("tails",
                                     self.metrics.namespaces.labels(sub.namespace)).dec()
        left = self._per_namespace.get(sub.namespace, 0) - 1
        if left > 0:
            self._per_namespace[sub.namespace] = left
        else:
            self._per_namespace.pop(sub.namespace, None)
        if not subs:
            del self._subs[(sub.namespace, sub.worker)]
        sub.close()

    def tailed(self) -> list[tuple[str, str]]:
        """The (namespace, worker) pairs with at least one subscriber."""
        return sorted(self._subs)

    def publish(self, event: TailEvent) -> int:
        """Offers the event to the matching subscribers; how many accepted it."""
        subs = self._subs.get((event.namespace, event.worker))
        if not subs:
            return 0
        accepted = 0
        for sub in tuple(subs):
            if sub.filter.matches(event, self.rng) and sub.offer(event.line):
                accepted += 1
        return accepted

    def close(self) -> None:
        """Ends every stream (their next read returns None); new subscriptions are refused."""
        self.closed = True
        for subs in list(self._subs.values()):
            for sub in list(subs):
                self.unsubscribe(sub)
