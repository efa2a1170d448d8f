"""Shard ownership of the DO hosts (services/objects/ownership.py) over a real embedded
event log and the projector: one owner per shard, takeover only after the lease ran
out, a stale owner refuses, and a host whose workerd died lets its leases lapse."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventlog.embedded import EmbeddedEventLog
from projections.memory_store import MemoryProjectionStore
from projections.projector import Projector
from projections.reader import ProjectionReader
from services.leases import LeaseClient
from services.objects.ownership import (
    Ownership,
    holder_address,
    holder_name,
    shard_of,
    shard_scope,
)
from services.scheduler.clock import AcceleratedClock

TTL = 3000


@pytest.fixture
async def reader(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedEventLog, ProjectionReader]]:
    async with EmbeddedEventLog(tmp_path / "log.db", partitions=4) as log:
        store = MemoryProjectionStore()
        stop = asyncio.Event()
        projector = asyncio.create_task(Projector(log, store).run(stop))
        try:
            yield log, ProjectionReader(store)
        finally:
            stop.set()
            await projector


def test_scopes_and_holders() -> None:
    scope = shard_scope("acme", "app", "Counter$2", 6)
    assert scope.startswith("do:acme/app/counter_2-") and scope.endswith("/2")
    assert shard_scope("acme", "app", "Counter", 1) != shard_scope("acme", "app", "counter", 1)
    assert shard_of("ff" + "0" * 62) == 3
    assert holder_address(holder_name("127.0.0.1:4100", 77)) == "127.0.0.1:4100"
    assert holder_address("operator-alice") is None


async def test_one_owner_takeover_after_expiry_and_stale_owner_refused(
        reader: tuple[EmbeddedEventLog, ProjectionReader]) -> None:
    log, projection = reader
    now = time.time_ns() // 1_000_000
    clock = AcceleratedClock(real_epoch_ms=now, virtual_epoch_ms=now, factor=20)
    alive = {"a": True}

    def host(name: str) -> Ownership:
        port = 4001 if name == "a" else 4002
        return Ownership(LeaseClient(log, projection, clock, actor=name), clock,
                         holder_name(f"127.0.0.1:{port}", 1), ttl_ms=TTL,
                         alive=lambda: alive.get(name, True))

    a, b = host("a"), host("b")
    scope = shard_scope("acme", "app", "Counter", 0)
    first = await a.owner(scope)
    assert first.mine and first.generation == 1
    other = await b.owner(scope)
    assert not other.mine and other.address == "127.0.0.1:4001"
    # A keeps it while it renews (its renew loop runs on the accelerated clock).
    await a.start()
    await clock.sleep_ms(TTL * 2)
    assert not (await b.owner(scope)).mine
    # A's workerd dies: the supervisor stops renewing; B takes over after expiry.
    alive["a"] = False
    deadline = time.monotonic() + 10
    while not (taken := await b.owner(scope)).mine:
        assert time.monotonic() < deadline
        await clock.sleep_ms(TTL / 4)
    assert taken.generation == 2
    # A (as if resumed) no longer serves: its lease moved on.
    alive["a"] = True
    stale = await a.owner(scope)
    assert not stale.mine and stale.address == "127.0.0.1:4002"
    await a.stop()
    await b.stop()
