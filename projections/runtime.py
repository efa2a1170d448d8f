"""Open the log and projection stores a process is configured for."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from eventlog.factory import open_event_log
from eventlog.port import EventLog
from projections.audit_store import AuditStore
from projections.memory_store import MemoryProjectionStore
from projections.redis_store import RedisProjectionStore
from projections.settings import Settings
from projections.store import ProjectionStore

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run` on uvloop when it is installed (uvicorn[standard] brings it).

    A command's latency is a dozen socket round trips through the API's and the
    projector's event loops; uvloop's is the cheaper per wake-up (docs/api.md,
    Performance)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


@dataclass
class Backends:
    log: EventLog
    store: ProjectionStore
    audit: AuditStore


@contextlib.asynccontextmanager
async def open_backends(settings: Settings) -> AsyncIterator[Backends]:
    if settings.embedded:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    store: ProjectionStore = (
        MemoryProjectionStore() if settings.redis_url is None
        else RedisProjectionStore(settings.redis_url, prefix=settings.redis_prefix))
    async with contextlib.AsyncExitStack() as stack:
        log = await stack.enter_async_context(open_event_log(settings.event_log_url))
        await stack.enter_async_context(store)
        audit = await stack.enter_async_context(AuditStore(settings.database_url))
        yield Backends(log, store, audit)
