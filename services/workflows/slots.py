"""Invocation slots of the engine, shared fairly between namespaces.

The one place the engine's scheduling policy lives: `Engine` asks
`async with slots.slot(namespace)` around each invocation and nothing else,
so the platform's `services.fairshare.FairShare` (same interface) replaces
this stand-in in one place.

A namespace waits for one of its own slots (at most `per_namespace(ns)`)
before it queues for a shared one, so its surplus work never stands in the
shared queue ahead of another namespace's.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol


class SlotShare(Protocol):
    def slot(self, namespace: str) -> AbstractAsyncContextManager[Any]: ...

    def held(self, namespace: str) -> int: ...


class NamespaceSlots:
    def __init__(self, capacity: int, per_namespace: Callable[[str], int]) -> None:
        self.capacity = capacity
        self._cap_of = per_namespace
        self._shared = asyncio.Semaphore(capacity)
        self._own: dict[str, asyncio.Semaphore] = {}
        self._held: dict[str, int] = {}

    def held(self, namespace: str) -> int:
        return self._held.get(namespace, 0)

    @asynccontextmanager
    async def slot(self, namespace: str) -> AsyncIterator[None]:
        own = self._own.get(namespace)
        if own is None:
            cap = max(1, min(self.capacity, int(self._cap_of(namespace))))
            own = self._own[namespace] = asyncio.Semaphore(cap)
        async with own, self._shared:
            self._held[namespace] = self.held(namespace) + 1
            try:
                yield
            finally:
                self._held[namespace] -= 1
