"""Which tenant resources exist, read from the projection and cached per namespace.

Binding stubs carry (namespace, resource) set by the platform from a version
the fold accepted, so a resource existed when its version was uploaded; this
index catches the ones deleted since (a forced delete). Entries are dropped on
every change notification of the projection, so a deletion is seen within one
change-feed round trip (milliseconds), never read-your-writes; docs/kv.md says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from projections import keys
from projections.store import ProjectionStore

log = logging.getLogger("wdl.data")


class ResourceIndex:
    def __init__(self, store: ProjectionStore, *, max_entries: int = 100_000) -> None:
        self.store = store
        self.max_entries = max_entries
        self._names: dict[tuple[str, str], frozenset[str]] = {}
        self._watcher: asyncio.Task[None] | None = None

    async def exists(self, kind: str, namespace: str, name: str) -> bool:
        cached = self._names.get((kind, namespace))
        if cached is None:
            raw = await self.store.hgetall(keys.resources(kind, namespace))
            cached = frozenset(raw)
            if len(self._names) >= self.max_entries:
                self._names.clear()
            self._names[(kind, namespace)] = cached
        return name in cached

    def checker(self, kind: str) -> Callable[[str, str], Awaitable[bool]]:
        """`exists(namespace, name)` for one resource kind, as the data routes take it."""
        async def exists(namespace: str, name: str) -> bool:
            return await self.exists(kind, namespace, name)
        return exists

    def invalidate(self) -> None:
        self._names.clear()

    async def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch(), name="data-resource-watch")

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None

    async def _watch(self) -> None:
        while True:
            try:
                # Returns on a change or after the timeout: either way, re-read lazily.
                await self.store.wait_for_change(1.0)
                self.invalidate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("resource index refresh failed: %s", exc)
                self.invalidate()
                await asyncio.sleep(0.5)
