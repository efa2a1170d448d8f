"""Scheduler replicas on the embedded log: slots fire once, leases fence, takeover resumes.

The dispatcher here is a recorder (the scheduler's own port); dispatching into a
real workerd is covered by tests/integration/test_scheduler_workerd.py.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from eventlog import events as ev
from eventlog.embedded import EmbeddedEventLog
from eventlog.envelope import Envelope
from projections.memory_store import MemoryProjectionStore
from projections.projector import Projector
from projections.reader import ProjectionReader
from services.leases import LeaseClient
from services.scheduler.clock import AcceleratedClock
from services.scheduler.scheduler import Scheduler, slots_between
from tests.factories import upload

MINUTE = 60_000


class Recorder:
    def __init__(self) -> None:
        self.fired: list[tuple[str, str, int]] = []

    async def dispatch(self, namespace: str, worker: str, version_id: str, cron: str,
                       slot_ms: int) -> tuple[str, str]:
        self.fired.append((f"{namespace}/{worker}", version_id, slot_ms))
        return "ok", ""


@pytest.fixture
async def platform(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedEventLog, ProjectionReader]]:
    async with EmbeddedEventLog(tmp_path / "log.db", partitions=4) as log:
        store = MemoryProjectionStore()
        stop = asyncio.Event()
        projector = asyncio.create_task(Projector(log, store).run(stop))
        try:
            yield log, ProjectionReader(store)
        finally:
            stop.set()
            await projector


async def deploy_with_cron(log: EmbeddedEventLog, reader: ProjectionReader) -> None:
    events: list[ev.Event] = [ev.NamespaceCreated(namespace="acme"),
              upload("acme", "tick", "v1", crons=("* * * * *",)),
              ev.VersionPromoted(namespace="acme", worker="tick", version_id="v1")]
    for payload in events:
        envelope = Envelope.new(payload, actor="test")
        pos = await log.append(envelope)
        verdict = await reader.wait_verdict(str(envelope.event_id), pos.partition, pos.offset)
        assert verdict.accepted, verdict


def test_slots_between_is_exclusive_inclusive() -> None:
    base = 1_790_000_040_000 - 1_790_000_040_000 % MINUTE
    assert slots_between("* * * * *", base, base + 3 * MINUTE) == [
        base + MINUTE, base + 2 * MINUTE, base + 3 * MINUTE]
    assert slots_between("*/5 * * * *", base, base + MINUTE) in ([], [base + MINUTE])


async def test_two_replicas_fire_each_slot_exactly_once_and_take_over(
        platform: tuple[EmbeddedEventLog, ProjectionReader]) -> None:
    log, reader = platform
    await deploy_with_cron(log, reader)
    # One virtual minute per 0.5 real seconds.
    clock = AcceleratedClock(real_epoch_ms=time.time_ns() // 1_000_000,
                             virtual_epoch_ms=1_790_000_000_000, factor=120)
    recorder = Recorder()
    replicas = [Scheduler(leases=LeaseClient(log, reader, clock, actor=f"sched:{name}"),
                          reader=reader, dispatcher=recorder, clock=clock, holder=name,
                          ttl_ms=20_000, tick_ms=2_000)
                for name in ("a", "b")]
    stops = [asyncio.Event(), asyncio.Event()]
    tasks = [asyncio.create_task(r.run(s)) for r, s in zip(replicas, stops, strict=True)]
    try:
        async with asyncio.timeout(30):
            while len(recorder.fired) < 4:
                await asyncio.sleep(0.05)
        leaders = [r for r in replicas if r.leading]
        assert len(leaders) == 1
        leader = leaders[0]
        # The leader leaves; the other replica takes over and the slots go on.
        stops[replicas.index(leader)].set()
        await tasks[replicas.index(leader)]
        before = len(recorder.fired)
        async with asyncio.timeout(30):
            while len(recorder.fired) < before + 4:
                await asyncio.sleep(0.05)
        assert [r for r in replicas if r.leading] == [r for r in replicas if r is not leader]
    finally:
        for s in stops:
            s.set()
        await asyncio.gather(*tasks)
    slots = [slot for _, _, slot in recorder.fired]
    assert all(count == 1 for count in Counter(slots).values()), "a slot fired twice"
    # No gap: consecutive minutes from the first slot to the last.
    assert sorted(slots) == list(range(min(slots), max(slots) + 1, MINUTE))
    runs = await reader.store.hgetall("cron_runs:acme/tick")
    assert len(runs) == len(slots)
    assert all('"status":"ok"' in v for v in runs.values())


async def test_a_fenced_off_holder_cannot_claim(
        platform: tuple[EmbeddedEventLog, ProjectionReader]) -> None:
    log, reader = platform
    await deploy_with_cron(log, reader)
    clock = AcceleratedClock(real_epoch_ms=time.time_ns() // 1_000_000,
                             virtual_epoch_ms=1_790_000_000_000, factor=1)
    leases = LeaseClient(log, reader, clock, actor="test")
    gen = await leases.acquire("scheduler", "old", ttl_ms=60_000)
    assert gen == 1
    takeover = await leases.take_over("scheduler", "operator", 60_000, expected_generation=1)
    assert takeover.accepted
    verdict = await leases.submit(ev.CronSlotClaimed(
        scope="scheduler", holder="old", generation=1, namespace="acme", worker="tick",
        version_id="v1", cron="* * * * *", slot_ms=1_790_000_060_000), 1)
    assert (verdict.accepted, verdict.code) == (False, "stale_generation")
    renew = await leases.submit(ev.LeaseRenewed(scope="scheduler", holder="old", generation=1,
                                                ttl_ms=1000, expires_at=clock.now_ms() + 1000),
                                1)
    assert renew.code == "stale_generation"
    lease = await leases.view("scheduler")
    assert (lease.holder, lease.generation) == ("operator", 2)


async def test_a_cron_from_looser_history_is_not_run(
        platform: tuple[EmbeddedEventLog, ProjectionReader],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """History written before crons were held to Cloudflare's five fields stays readable,
    but the scheduler runs none of its six- or seven-field triggers (one a second)."""
    log, reader = platform
    with monkeypatch.context() as loose:
        loose.setattr("eventlog.validation.cron", lambda field, value: value)
        events: list[ev.Event] = [
            ev.NamespaceCreated(namespace="acme"),
            upload("acme", "tick", "v1", crons=("* * * * * * *", "* * * * *")),
            ev.VersionPromoted(namespace="acme", worker="tick", version_id="v1")]
        for payload in events:
            envelope = Envelope.new(payload, actor="test")
            pos = await log.append(envelope)
            verdict = await reader.wait_verdict(str(envelope.event_id), pos.partition,
                                                pos.offset)
            assert verdict.accepted, verdict
    clock = AcceleratedClock(real_epoch_ms=time.time_ns() // 1_000_000,
                             virtual_epoch_ms=1_790_000_000_000, factor=1)
    scheduler = Scheduler(leases=LeaseClient(log, reader, clock, actor="sched:a"),
                          reader=reader, dispatcher=Recorder(), clock=clock, holder="a")
    assert [t.cron for t in await scheduler.triggers()] == ["* * * * *"]
