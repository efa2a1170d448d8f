"""Slots of the queue consumer shared fairly between namespaces.

Interim stand-in with the interface of the platform's `services/fairshare.py`
(`FairShare(engine, capacity, per_namespace, metrics)`, `slot(ns)`, `try_slot(ns)`,
`held(ns)`, `waiting(ns)`): the consumer imports it from here only, so switching to the
shared one is this module.

A namespace holds at most `per_namespace(ns)` slots and all together at most
`capacity`; namespaces waiting for a slot are served round-robin, so one namespace's
queue of waiters delays another's by at most one turn.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress

from prometheus_client import CollectorRegistry, Counter, Gauge


class FairShareMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.held = Gauge("wdl_fairshare_held", "slots a namespace holds",
                          ["engine", "namespace"], registry=registry)
        self.waiting = Gauge("wdl_fairshare_waiting", "a namespace's waiters for a slot",
                             ["engine", "namespace"], registry=registry)
        self.waits = Counter("wdl_fairshare_waits_total", "times a namespace had to wait",
                             ["engine", "namespace"], registry=registry)


class Lease:
    def __init__(self, share: FairShare, namespace: str) -> None:
        self._share, self.namespace, self._done = share, namespace, False

    def release(self) -> None:
        if not self._done:
            self._done = True
            self._share._release(self.namespace)


class FairShare:
    def __init__(self, engine: str, capacity: int, per_namespace: Callable[[str], int],
                 metrics: FairShareMetrics | None = None) -> None:
        self.engine = engine
        self.capacity = capacity
        self.per_namespace = per_namespace
        self.metrics = metrics
        self._held: dict[str, int] = {}
        self._total = 0
        # Namespaces with waiters, in turn order: one served goes to the back.
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}

    def held(self, namespace: str) -> int:
        return self._held.get(namespace, 0)

    def waiting(self, namespace: str) -> int:
        return len(self._waiters.get(namespace, ()))

    def _room(self, namespace: str) -> bool:
        return self._total < self.capacity and \
            self.held(namespace) < max(1, self.per_namespace(namespace))

    def _take(self, namespace: str) -> None:
        self._held[namespace] = self.held(namespace) + 1
        self._total += 1
        self._gauge(namespace)

    def _gauge(self, namespace: str) -> None:
        if self.metrics is not None:
            self.metrics.held.labels(self.engine, namespace).set(self.held(namespace))
            self.metrics.waiting.labels(self.engine, namespace).set(self.waiting(namespace))

    def try_slot(self, namespace: str) -> Lease | None:
        if self._waiters.get(namespace) or not self._room(namespace):
            return None
        self._take(namespace)
        return Lease(self, namespace)

    @asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[Lease]:
        lease = self.try_slot(namespace)
        if lease is None:
            lease = await self._wait(namespace)
        try:
            yield lease
        finally:
            lease.release()

    async def _wait(self, namespace: str) -> Lease:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(namespace, deque()).append(future)
        if self.metrics is not None:
            self.metrics.waits.labels(self.engine, namespace).inc()
        self._gauge(namespace)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self._release(namespace)  # granted as it was cancelled: give it back
            else:
                self._forget(namespace, future)
            raise
        return Lease(self, namespace)

    def _forget(self, namespace: str, future: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(namespace)
        if waiters is not None:
            with suppress(ValueError):
                waiters.remove(future)
            if not waiters:
                del self._waiters[namespace]
        self._gauge(namespace)

    def _release(self, namespace: str) -> None:
        self._held[namespace] = self.held(namespace) - 1
        if self._held[namespace] <= 0:
            del self._held[namespace]
        self._total -= 1
        self._gauge(namespace)
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiting namespaces, one each per turn."""
        progress = True
        while progress and self._total < self.capacity and self._waiters:
            progress = False
            for namespace in list(self._waiters):
                if self._total >= self.capacity:
                    break
                if not self._room(namespace):
                    continue
                waiters = self._waiters.pop(namespace)
                future = waiters.popleft()
                if waiters:
                    self._waiters[namespace] = waiters  # to the back of the turn
                progress = True
                if future.done():
                    continue  # cancelled while waiting: its task forgets it
                self._take(namespace)
                future.set_result(None)
