"""The projector against real Kafka, Redis and PostgreSQL: exactly-once, rebuild, replicas."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass

import pytest

from eventlog import events as ev
from eventlog.envelope import Envelope
from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import ROOT, Endpoints
from projections import keys
from projections.audit_store import AuditStore
from projections.membership import KafkaGroupMembership
from projections.projector import Projector
from projections.rebuild import rebuild, status, verify_live
from projections.redis_store import RedisProjectionStore
from tests.factories import env, sealed, upload

PARTITIONS = 4


@dataclass
class Stack:
    log: KafkaEventLog
    store: RedisProjectionStore
    audit: AuditStore
    topic: str
    prefix: str
    database_url: str


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str,
                unique_name: Callable[[str], str]) -> AsyncIterator[Stack]:
    assert services.kafka_bootstrap_servers and services.redis_url
    topic = unique_name("proj")
    prefix = f"{unique_name('p')}:"
    async with AsyncExitStack() as s:
        log = await s.enter_async_context(KafkaEventLog(KafkaSettings(
            bootstrap_servers=services.kafka_bootstrap_servers, topic=topic,
            partitions=PARTITIONS)))
        store = await s.enter_async_context(RedisProjectionStore(services.redis_url,
                                                                 prefix=prefix))
        audit = await s.enter_async_context(AuditStore(fresh_database))
        yield Stack(log, store, audit, topic, prefix, fresh_database)


def history(namespaces: int, workers: int, rounds: int, seed: int = 1) -> Iterator[Envelope]:
    """A realistic mix: uploads, promotes (some racing), rollbacks, secrets, hosts, leases."""
    rnd = random.Random(seed)
    for n in range(namespaces):
        yield env(ev.NamespaceCreated(namespace=f"ns{n}"))
    lease_gen: dict[str, int] = {}
    for r in range(rounds):
        for n in range(namespaces):
            ns = f"ns{n}"
            for w in range(workers):
                name = f"w{w}"
                yield env(upload(ns, name, f"v{r}", crons=("*/5 * * * *",) if r % 3 == 0
                                 else ()))
                yield env(ev.VersionPromoted(namespace=ns, worker=name, version_id=f"v{r}"))
                if r and rnd.random() < 0.3:
                    yield env(ev.WorkerRolledBack(namespace=ns, worker=name,
                                                  version_id=f"v{r - 1}", reason="test"))
                if rnd.random() < 0.2:
                    yield env(ev.SecretPut(namespace=ns, worker=name, name="API_KEY",
                                           sealed=sealed()))
            yield env(ev.HostClaimed(pattern=f"h{rnd.randrange(namespaces * 2)}.example.com",
                                     namespace=ns, worker="w0"))
            scope = f"owner/{ns}"
            gen = lease_gen.get(scope, 0)
            yield env(ev.LeaseTakenOver(scope=scope, holder=f"r{r}", generation=gen + 1,
                                        ttl_ms=1000, expires_at=10**13,
                                        previous_holder="x"), expected_generation=gen)
            lease_gen[scope] = gen + 1


async def append_all(log: KafkaEventLog, envelopes: Iterator[Envelope],
                     chunk: int = 2000) -> int:
    buf: list[Envelope] = []
    total = 0
    for e in envelopes:
        buf.append(e)
        if len(buf) >= chunk:
            total += len(await log.append_many(buf))
            buf.clear()
    if buf:
        total += len(await log.append_many(buf))
    return total


async def wait_applied(store: RedisProjectionStore, log: KafkaEventLog,
                       timeout: float = 120, audit: AuditStore | None = None) -> None:
    ends = await log.end_positions()
    async with asyncio.timeout(timeout):
        while True:
            applied = await store.applied(await store.current_generation())
            done = all(applied.get(p, 0) >= end for p, end in ends.items())
            if done and audit is not None:
                applied = await audit.applied(await audit.current_generation())
                done = all(applied.get(p, 0) >= end for p, end in ends.items())
            if done:
                return
            await store.wait_for_change(0.2)


async def test_live_projector_follows_appends_and_verifies(stack: Stack) -> None:
    await append_all(stack.log, history(namespaces=5, workers=3, rounds=3))
    stop = asyncio.Event()
    runner = asyncio.create_task(Projector(stack.log, stack.store, stack.audit).run(stop))
    try:
        await wait_applied(stack.store, stack.log)
        # A write after the projector caught up shows up too (tail, not just replay).
        position = await stack.log.append(env(ev.NamespaceCreated(namespace="late")))
        await wait_applied(stack.store, stack.log)
        verdict = await stack.store.hget(keys.verdicts(position.partition),
                                         await _last_event_id(stack, position))
        assert verdict is not None and '"accepted":true' in verdict
        assert await stack.store.hget(keys.NAMESPACES, "late") is not None
        assert await stack.store.hget(keys.routes("ns0"), "w0") in {"v1", "v2"}
    finally:
        stop.set()
        await runner
    report = await verify_live(stack.log, stack.store, stack.audit)
    assert report.ok, report.differences
    rows = await status(stack.log, stack.store, stack.audit)
    assert {r["lag"] for r in rows} == {0}
    assert {r["projection"] for r in rows} == {"redis", "audit"}


async def _last_event_id(stack: Stack, position: object) -> str:
    async for record in stack.log.read({position.partition: position.offset}):  # type: ignore[attr-defined]
        assert record.envelope is not None
        return str(record.envelope.event_id)
    raise AssertionError("appended record not found")


async def test_verify_names_the_first_differing_keys(stack: Stack) -> None:
    await append_all(stack.log, history(namespaces=2, workers=2, rounds=2))
    await Projector(stack.log, stack.store, stack.audit).catch_up()
    gen = await stack.store.current_generation()
    # Tamper with the live projection behind the projector's back.
    await stack.store.client.hset(stack.store.key(gen, keys.routes("ns1")), "w1", "evil")
    report = await verify_live(stack.log, stack.store)
    assert not report.ok
    assert any("routes:ns1 [w1]" in d and "evil" in d for d in report.differences)


async def test_drop_everything_and_rebuild_restores_identical_state(stack: Stack) -> None:
    await append_all(stack.log, history(namespaces=6, workers=3, rounds=3))
    await Projector(stack.log, stack.store, stack.audit).catch_up()
    gen = await stack.store.current_generation()
    before = await stack.store.digest(gen)
    audit_before = await stack.audit.digest(await stack.audit.current_generation())
    # Drop the Redis keyspace and the audit tables entirely.
    async for key in stack.store.client.scan_iter(match=f"{stack.prefix}*"):
        await stack.store.client.delete(key)
    async with stack.audit.engine.begin() as conn:
        await conn.exec_driver_sql("DROP SCHEMA audit_g1 CASCADE")
        await conn.exec_driver_sql("DELETE FROM wdl_audit_generations")
        await conn.exec_driver_sql("DELETE FROM wdl_audit_current")
        await conn.exec_driver_sql("INSERT INTO wdl_audit_generations VALUES (1, 0, 'live')")
        await conn.exec_driver_sql("INSERT INTO wdl_audit_current VALUES (1, 1)")
        await conn.exec_driver_sql("CREATE SCHEMA audit_g1")
    await stack.audit.stop()
    await stack.audit.start()  # migrations recreate the empty generation
    report = await rebuild(stack.log, stack.store, stack.audit, grace_s=0.1)
    assert report.switched
    assert report.digest == before
    assert report.audit_digest == audit_before
    assert (await verify_live(stack.log, stack.store, stack.audit)).ok


async def test_reader_never_sees_a_half_built_state_during_rebuild(stack: Stack) -> None:
    await append_all(stack.log, history(namespaces=8, workers=4, rounds=4))
    await Projector(stack.log, stack.store, stack.audit).catch_up()
    expected = {f"ns{n}": await stack.store.hgetall(keys.routes(f"ns{n}")) for n in range(8)}
    assert all(len(v) == 4 for v in expected.values())
    seen_generations: set[int] = set()
    reads = 0
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal reads
        rnd = random.Random(3)
        while not done.is_set():
            ns = f"ns{rnd.randrange(8)}"
            assert await stack.store.hgetall(keys.routes(ns)) == expected[ns]
            assert await stack.store.hget(keys.routes(ns), "w3") == expected[ns]["w3"]
            seen_generations.add(await stack.store.current_generation())
            reads += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(reader())
    report = await rebuild(stack.log, stack.store, stack.audit, grace_s=0.5)
    await asyncio.sleep(0.1)
    done.set()
    await task
    assert report.switched
    assert len(seen_generations) == 2  # the reader crossed the switch
    assert reads > 50


async def test_parallel_rebuild_equals_a_single_process_rebuild(stack: Stack) -> None:
    await append_all(stack.log, history(namespaces=6, workers=3, rounds=3))
    serial = await rebuild(stack.log, stack.store, stack.audit, switch=False)
    parallel = await rebuild(stack.log, stack.store, stack.audit, switch=False, workers=3,
                             batch_size=200)
    assert parallel.events == serial.events
    assert parallel.positions == serial.positions
    assert parallel.digest == serial.digest
    assert parallel.audit_digest == serial.audit_digest
    assert parallel.audit_generation is not None
    # The deferred secondary indexes are back before the rebuild returns.
    async with stack.audit.engine.connect() as conn:
        indexes = {r[0] for r in (await conn.exec_driver_sql(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %(s)s",
            {"s": f"audit_g{parallel.audit_generation}"})).all()}
    assert "ix_audit_events_ns_time" in indexes


async def test_parallel_rebuild_switches_while_a_live_projector_and_writers_run(
        stack: Stack) -> None:
    await append_all(stack.log, history(namespaces=6, workers=3, rounds=3))
    stop = asyncio.Event()
    live = asyncio.create_task(Projector(stack.log, stack.store, stack.audit).run(stop))
    more = asyncio.create_task(append_all(
        stack.log, history(namespaces=6, workers=3, rounds=2, seed=5), chunk=50))
    try:
        report = await rebuild(stack.log, stack.store, stack.audit, grace_s=0.5, workers=2,
                               batch_size=300)
        await more
        await wait_applied(stack.store, stack.log, audit=stack.audit)
    finally:
        stop.set()
        await live
    assert report.switched
    assert await stack.store.current_generation() == report.generation
    assert await stack.audit.current_generation() == report.audit_generation
    total, distinct = await stack.audit.count_positions(report.audit_generation)
    assert total == distinct == sum((await stack.log.end_positions()).values())
    assert (await verify_live(stack.log, stack.store, stack.audit)).ok


async def test_a_failing_rebuild_worker_fails_the_rebuild(stack: Stack) -> None:
    from projections.parallel import Backends, ParallelRebuild, WorkerFailed

    await append_all(stack.log, history(namespaces=2, workers=2, rounds=1))
    broken = Backends(stack.log.settings, "redis://127.0.0.1:1/0", stack.prefix,
                      stack.database_url)
    with pytest.raises(WorkerFailed, match="rebuild worker"):
        async with ParallelRebuild(broken, workers=2, partitions=PARTITIONS, generation=1,
                                   audit_generation=None, until=None, batch_size=100,
                                   verify=False, follow=False, progress=None) as run:
            await run.built()


async def test_two_replicas_share_partitions_through_a_consumer_group(
        stack: Stack, services: Endpoints, unique_name: Callable[[str], str]) -> None:
    assert services.kafka_bootstrap_servers
    group = unique_name("group")
    await append_all(stack.log, history(namespaces=6, workers=2, rounds=2))
    stops = [asyncio.Event(), asyncio.Event()]
    memberships = [KafkaGroupMembership(services.kafka_bootstrap_servers, stack.topic, group,
                                        session_timeout_ms=6000) for _ in stops]
    replicas = [Projector(stack.log, stack.store, stack.audit) for _ in stops]
    tasks = [asyncio.create_task(r.run(s, membership=m.__aiter__()))
             for r, s, m in zip(replicas, stops, memberships, strict=True)]
    try:
        await wait_applied(stack.store, stack.log)
        owned = [set(r.fold.partitions) for r in replicas]
        # Each replica folded only what it was assigned; together: every partition.
        assert owned[0] | owned[1] == set(range(PARTITIONS))
        # One replica leaves: the other takes its partitions over and keeps going.
        stops[0].set()
        await tasks[0]
        await append_all(stack.log, (env(ev.NamespaceCreated(namespace=f"after{i}"))
                                     for i in range(20)))
        await wait_applied(stack.store, stack.log, timeout=60, audit=stack.audit)
        assert set(replicas[1].fold.partitions) == set(range(PARTITIONS))
    finally:
        for s in stops:
            s.set()
        await asyncio.gather(*tasks, return_exceptions=True)
    report = await verify_live(stack.log, stack.store, stack.audit)
    assert report.ok, report.differences
    total, distinct = await stack.audit.count_positions(await stack.audit.current_generation())
    assert total == distinct == sum((await stack.log.end_positions()).values())


async def test_sigkill_during_replay_applies_everything_exactly_once(
        stack: Stack, services: Endpoints) -> None:
    events = await append_all(stack.log, history(namespaces=100, workers=10, rounds=37))
    assert events >= 99_000
    proc_env = {**os.environ, **services.as_env(), "WDL_TOPIC": stack.topic,
                "WDL_PARTITIONS": str(PARTITIONS), "WDL_REDIS_PREFIX": stack.prefix,
                "DATABASE_URL": stack.database_url,
                # One replica at a time owns everything; a dead member of a consumer
                # group would hold partitions until its session times out.
                "WDL_PROJECTOR_GROUP": ""}
    rnd = random.Random(11)
    kills = 0
    progress: list[int] = []
    for _ in range(20):
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "projections", cwd=ROOT, env=proc_env,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        await asyncio.sleep(rnd.uniform(1.5, 4.0))
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        kills += 1
        gen = await stack.store.current_generation()
        progress.append(sum((await stack.store.applied(gen)).values()))
    assert kills == 20
    assert progress[-1] > 0  # the kills landed while work was being applied
    final = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "projections", cwd=ROOT, env=proc_env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    try:
        await wait_applied(stack.store, stack.log, timeout=240, audit=stack.audit)
    finally:
        final.send_signal(signal.SIGTERM)
        await asyncio.wait_for(final.wait(), 30)
    live = await stack.store.digest(await stack.store.current_generation())
    audit_gen = await stack.audit.current_generation()
    total, distinct = await stack.audit.count_positions(audit_gen)
    assert total == distinct == events  # no position twice, none missing
    clean = await rebuild(stack.log, stack.store, stack.audit, switch=False)
    assert clean.digest == live
    assert clean.audit_digest == await stack.audit.digest(audit_gen)
