"""Fair shares of the cron dispatcher: per-namespace caps, round-robin among waiters.

A stand-in with the interface of the lead's `services/fairshare.py` (issue 23): when that
lands, `FairShare` here becomes an import of it and nothing else in the scheduler moves.

`async with share.slot(ns):` waits until `ns` holds fewer than `per_namespace(ns)` slots
and one of `capacity` is free. Waiting namespaces are served round-robin, one grant per
turn, so however many runs one namespace queues, another namespace's waiter is served
within one turn of a freed slot; and while a namespace holds fewer than its cap and
the pool is not full it does not wait at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable


class Lease:
    """One held slot; `release()` gives it back (idempotent)."""

    def __init__(self, share: FairShare, namespace: str) -> None:
        self._share = share
        self.namespace = namespace
        self._released = False

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._share._give_back(self.namespace)


class FairShare:
    def __init__(self, engine: str, capacity: int, per_namespace: Callable[[str], int],
                 metrics: object | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.engine = engine
        self.capacity = capacity
        self.per_namespace = per_namespace
        self.metrics = metrics  # the lead's FairShareMetrics; the scheduler keeps its own
        self._held: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._ring: deque[str] = deque()  # namespaces with waiters, in serving order
        self._total = 0

    def held(self, namespace: str) -> int:
        return self._held.get(namespace, 0)

    def waiting(self, namespace: str) -> int:
        return sum(1 for f in self._waiters.get(namespace, ()) if not f.done())

    @property
    def in_use(self) -> int:
        return self._total

    def _cap(self, namespace: str) -> int:
        return max(1, int(self.per_namespace(namespace)))

    def _can_take(self, namespace: str) -> bool:
        return self._total < self.capacity and self.held(namespace) < self._cap(namespace)

    def _take(self, namespace: str) -> None:
        self._held[namespace] = self.held(namespace) + 1
        self._total += 1

    def try_slot(self, namespace: str) -> Lease | None:
        """A slot now, or None (the caller refuses rather than waits). Never jumps a
        queue: a namespace with waiters of its own gets None."""
        if self.waiting(namespace) or not self._can_take(namespace):
            return None
        self._take(namespace)
        return Lease(self, namespace)

    @contextlib.asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[Lease]:
        lease = await self.acquire(namespace)
        try:
            yield lease
        finally:
            lease.release()

    async def acquire(self, namespace: str) -> Lease:
        lease = self.try_slot(namespace)
        if lease is not None:
            return lease
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._waiters.setdefault(namespace, deque())
        queue.append(future)
        if namespace not in self._ring:
            self._ring.append(namespace)
        try:
            await future
        except BaseException:
            if future.done() and not future.cancelled():
                # Granted just as the waiter was cancelled: hand the slot on.
                self._give_back(namespace)
            else:
                future.cancel()
                self._forget(namespace, future)
            raise
        return Lease(self, namespace)

    def _forget(self, namespace: str, future: asyncio.Future[None]) -> None:
        queue = self._waiters.get(namespace)
        if queue is not None:
            with contextlib.suppress(ValueError):
                queue.remove(future)
            if not queue:
                del self._waiters[namespace]
                with contextlib.suppress(ValueError):
                    self._ring.remove(namespace)

    def _give_back(self, namespace: str) -> None:
        left = self.held(namespace) - 1
        if left > 0:
            self._held[namespace] = left
        else:
            self._held.pop(namespace, None)
        self._total -= 1
        self._grant()

    def _grant(self) -> None:
        """Hands free slots to waiters, one namespace per turn round the ring."""
        passes = len(self._ring)
        while self._total < self.capacity and self._ring and passes > 0:
            namespace = self._ring[0]
            self._ring.rotate(-1)
            queue = self._waiters.get(namespace)
            while queue and queue[0].done():  # cancelled waiters
                queue.popleft()
            if not queue:
                self._waiters.pop(namespace, None)
                self._ring.remove(namespace)
                passes = len(self._ring)
                continue
            if self.held(namespace) >= self._cap(namespace):
                passes -= 1
                continue
            self._take(namespace)
            queue.popleft().set_result(None)
            if not queue:
                del self._waiters[namespace]
                self._ring.remove(namespace)
            passes = len(self._ring)
