"""Coalesce concurrent calls into rounds that start after the caller arrived.

`await coalescer.run()` returns the result of an invocation of `fn` that
*started after* the call was made, shared with every other caller that
arrived while the previous round was running. So a caller sees a read at
least as new as its own arrival (what read-your-writes needs), while N
concurrent callers cost at most two invocations, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    def __init__(self, fn: Callable[[], Awaitable[T]]) -> None:
        self._fn = fn
        self._running: asyncio.Future[T] | None = None
        self._queued: asyncio.Future[T] | None = None

    async def run(self) -> T:
        if self._running is None:
            return await asyncio.shield(self._start())
        if self._queued is None:
            self._queued = asyncio.ensure_future(self._after(self._running))
        return await asyncio.shield(self._queued)

    def _start(self) -> asyncio.Future[T]:
        fut = asyncio.ensure_future(self._fn())
        self._running = fut
        fut.add_done_callback(self._finished)
        return fut

    def _finished(self, fut: asyncio.Future[T]) -> None:
        if self._running is fut:
            self._running = None
        if not fut.cancelled():
            fut.exception()  # retrieved: each caller sees it through its own await

    async def _after(self, previous: asyncio.Future[T]) -> T:
        await asyncio.wait({previous})
        self._queued = None
        running = self._running if self._running is not None else self._start()
        return await running
