"""Fair shares of an engine's capacity between namespaces.

Every shared engine (workflow invocations, queue batches, cron runs, tails) has
a fixed capacity: connections to the gateway, invocation slots, streams. Left
first-come first-served, one namespace that fills it with slow work delays
every other namespace by as long as its slowest work takes. A `FairShare`
bounds what one namespace holds (`per_namespace(ns)`) and, when the capacity
is full, hands each freed slot to the *next namespace* in a round-robin of the
namespaces waiting, not to the next waiter: a namespace with a thousand
waiters gets one turn, like a namespace with one.

The bound it gives: a namespace below its cap waits for at most one slot to
be freed per namespace ahead of it in the ring — and, when the caps leave
room (sum of the busy namespaces' caps below the capacity), not at all.

Caps are read at every decision, so an operator's `wdl ns limits set` applies
to the next acquisition (`NamespaceShares` caches the namespace record for a
few seconds).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from services.observability.labels import NamespaceLabels

# The keys of a namespace's `limits` record that name a share, with what they bound.
SHARE_KEYS: Mapping[str, str] = {
    "workflow_slots": "workflow invocations in flight",
    "queue_batches": "queue batches in delivery",
    "cron_runs": "cron runs in flight",
    "tails": "open tail sessions",
}


class FairShareMetrics:
    """docs/metrics.md, "Fair shares": one set per process, labelled by engine."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 namespaces: NamespaceLabels | None = None) -> None:
        r = registry if registry is not None else CollectorRegistry()
        self.registry = r
        # Moved by inc/dec, never set: namespaces past the label cap share `_other`.
        self.namespaces = namespaces if namespaces is not None else NamespaceLabels()
        self.held = Gauge("wdl_fairshare_held", "Slots of an engine a namespace holds",
                          ["engine", "namespace"], registry=r)
        self.waiting = Gauge("wdl_fairshare_waiting", "A namespace's work waiting for a slot "
                             "of an engine", ["engine", "namespace"], registry=r)
        self.waits = Counter("wdl_fairshare_waits", "Acquisitions that had to wait (the "
                             "engine full, or the namespace at its cap)",
                             ["engine", "namespace"], registry=r)
        self.refusals = Counter("wdl_fairshare_refusals", "Acquisitions refused because the "
                                "namespace was at its cap (engines that refuse, not wait)",
                                ["engine", "namespace"], registry=r)


class Lease:
    """One slot held by a namespace; `release()` is idempotent."""

    __slots__ = ("_released", "_share", "acquired_at", "namespace")

    def __init__(self, share: FairShare, namespace: str) -> None:
        self._share = share
        self.namespace = namespace
        self._released = False
        self.acquired_at = time.monotonic()

    def release(self) -> None:
        if not self._released:
            self._released = True
            self._share._release(self.namespace)

    @property
    def released(self) -> bool:
        return self._released


class FairShare:
    def __init__(self, engine: str, capacity: int, per_namespace: Callable[[str], int], *,
                 metrics: FairShareMetrics | None = None) -> None:
        if capacity < 1:
            raise ValueError("a fair share needs a capacity of at least 1")
        self.engine = engine
        self.capacity = capacity
        self._cap_of = per_namespace
        self.metrics = metrics
        self._held: dict[str, int] = {}
        self._waiters: dict[str, deque[asyncio.Future[Lease]]] = {}
        # Namespaces with waiters, in the order their next turn comes.
        self._ring: deque[str] = deque()
        self._total = 0

    # --- reading ----------------------------------------------------------------

    @property
    def in_use(self) -> int:
        return self._total

    def held(self, namespace: str) -> int:
        return self._held.get(namespace, 0)

    def waiting(self, namespace: str) -> int:
        return sum(1 for f in self._waiters.get(namespace, ()) if not f.done())

    def cap(self, namespace: str) -> int:
        # Never above the capacity, never below one: a cap of 0 would starve for good.
        return max(1, min(self.capacity, int(self._cap_of(namespace))))

    def snapshot(self) -> dict[str, dict[str, int]]:
        names = set(self._held) | set(self._waiters)
        return {ns: {"held": self.held(ns), "waiting": self.waiting(ns), "cap": self.cap(ns)}
                for ns in sorted(names) if self.held(ns) or self.waiting(ns)}

    # --- acquiring --------------------------------------------------------------

    def try_slot(self, namespace: str) -> Lease | None:
        """A slot now, or None (the namespace at its cap, or the engine full)."""
        self._dispatch()
        if self._eligible(namespace) and not self._waiters.get(namespace):
            return self._grant(namespace)
        if self.metrics is not None:
            self.metrics.refusals.labels(self.engine, self._label(namespace)).inc()
        return None

    async def acquire(self, namespace: str) -> Lease:
        self._dispatch()
        if self._eligible(namespace) and not self._waiters.get(namespace):
            return self._grant(namespace)
        future: asyncio.Future[Lease] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(namespace, deque()).append(future)
        if namespace not in self._ring:
            self._ring.append(namespace)
        if self.metrics is not None:
            self.metrics.waits.labels(self.engine, self._label(namespace)).inc()
            self.metrics.waiting.labels(self.engine, self._label(namespace)).inc()
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted in the same tick the waiter was cancelled: give it back.
                future.result().release()
            else:
                self._forget(namespace, future)
            raise
        finally:
            if self.metrics is not None:
                self.metrics.waiting.labels(self.engine, self._label(namespace)).dec()

    @asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[Lease]:
        lease = await self.acquire(namespace)
        try:
            yield lease
        finally:
            lease.release()

    def recheck(self) -> None:
        """Caps may have risen: hand out what they now allow."""
        self._dispatch()

    # --- internals --------------------------------------------------------------

    def _eligible(self, namespace: str) -> bool:
        return self._total < self.capacity and self.held(namespace) < self.cap(namespace)

    def _grant(self, namespace: str) -> Lease:
        self._held[namespace] = self.held(namespace) + 1
        self._total += 1
        if self.metrics is not None:
            self.metrics.held.labels(self.engine, self._label(namespace)).inc()
        return Lease(self, namespace)

    def _release(self, namespace: str) -> None:
        left = self.held(namespace) - 1
        if left > 0:
            self._held[namespace] = left
        else:
            self._held.pop(namespace, None)
        self._total -= 1
        if self.metrics is not None:
            self.metrics.held.labels(self.engine, self._label(namespace)).dec()
        self._dispatch()

    def _forget(self, namespace: str, future: asyncio.Future[Lease]) -> None:
        queue = self._waiters.get(namespace)
        if queue is not None:
            with suppress(ValueError):
                queue.remove(future)
            if not queue:
                del self._waiters[namespace]
                with suppress(ValueError):
                    self._ring.remove(namespace)

    def _dispatch(self) -> None:
        # One turn per namespace around the ring; a namespace at its cap keeps its
        # place and is skipped until one of its own slots comes back.
        while self._total < self.capacity and self._ring:
            for _ in range(len(self._ring)):
                namespace = self._ring[0]
                self._ring.rotate(-1)
                queue = self._waiters.get(namespace)
                while queue and queue[0].done():
                    queue.popleft()  # cancelled waiters
                if not queue:
                    self._waiters.pop(namespace, None)
                    self._ring.remove(namespace)
                    break
                if self.held(namespace) < self.cap(namespace):
                    future = queue.popleft()
                    if not queue:
                        del self._waiters[namespace]
                        self._ring.remove(namespace)
                    future.set_result(self._grant(namespace))
                    break
            else:
                return  # every waiting namespace is at its cap

    def _label(self, namespace: str) -> str:
        assert self.metrics is not None
        return self.metrics.namespaces.labels(namespace)


NamespaceDoc = Callable[[str], Awaitable[Mapping[str, Any] | None]]


class NamespaceShares:
    """Each namespace's caps: its `limits` record (`wdl ns limits set`), else the defaults.

    `refresh(ns)` reads the record at most every `ttl_s`; `cap()` never does I/O,
    so a `FairShare` can ask it at every decision.
    """

    def __init__(self, namespace_doc: NamespaceDoc, defaults: Mapping[str, int], *,
                 ttl_s: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        unknown = set(defaults) - set(SHARE_KEYS)
        if unknown:
            raise ValueError(f"unknown share keys: {sorted(unknown)}")
        self._doc = namespace_doc
        self.defaults = dict(defaults)
        self.ttl_s = ttl_s
        self._clock = clock
        self._limits: dict[str, tuple[float, Mapping[str, Any]]] = {}

    async def refresh(self, namespace: str) -> None:
        cached = self._limits.get(namespace)
        now = self._clock()
        if cached is not None and now - cached[0] < self.ttl_s:
            return
        doc = await self._doc(namespace)
        limits = (doc or {}).get("limits") or {}
        self._limits[namespace] = (now, dict(limits) if isinstance(limits, Mapping) else {})

    def cap(self, key: str, namespace: str) -> int:
        cached = self._limits.get(namespace)
        value = cached[1].get(key) if cached is not None else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
        return self.defaults[key]

    def of(self, key: str) -> Callable[[str], int]:
        """The cap function a `FairShare` takes."""
        return lambda namespace: self.cap(key, namespace)
