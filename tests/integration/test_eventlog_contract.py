"""One contract for every EventLog adapter, run unchanged against each of them.

Kafka runs against the real broker of the test services; the embedded log
against a real SQLite file. Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import msgspec
import pytest

from eventlog import (
    DEFAULT_MAX_EVENT_BYTES,
    EmbeddedEventLog,
    Envelope,
    EventLog,
    EventTooLarge,
    InvalidEvent,
    KafkaEventLog,
    KafkaSettings,
    LogNotStarted,
    NamespaceCreated,
    PartitionCountMismatch,
    Position,
    Record,
    SecretPut,
    VersionPromoted,
    partition_for,
)
from eventlog.port import PreparedEvent
from harness.endpoints import Endpoints
from tests.eventlog_samples import envelope, every_event, sealed

pytestmark = pytest.mark.integration

PARTITIONS = 4
OpenLog = Callable[..., EventLog]


@pytest.fixture(params=["embedded", "kafka"])
def open_log(request: pytest.FixtureRequest, tmp_path: Path) -> OpenLog:
    """Opens (not starts) an adapter on one fresh store; call again to reopen the same store."""
    store = f"contract-{uuid.uuid4().hex[:12]}"
    if request.param == "embedded":

        def embedded(
            partitions: int | None = PARTITIONS, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
        ) -> EventLog:
            return EmbeddedEventLog(
                tmp_path / f"{store}.db", partitions=partitions, max_event_bytes=max_event_bytes
            )

        return embedded
    services: Endpoints = request.getfixturevalue("services")
    assert services.kafka_bootstrap_servers is not None
    bootstrap = services.kafka_bootstrap_servers

    def kafka(
        partitions: int | None = PARTITIONS, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> EventLog:
        settings = KafkaSettings(
            bootstrap_servers=bootstrap,
            topic=store,
            partitions=partitions,
            max_event_bytes=max_event_bytes,
        )
        return KafkaEventLog(settings)

    return kafka


@pytest.fixture
async def log(open_log: OpenLog) -> AsyncIterator[EventLog]:
    async with open_log() as started:
        yield started


def promote(namespace: str, worker: str, n: int) -> Envelope:
    return Envelope.new(
        VersionPromoted(namespace=namespace, worker=worker, version_id=f"v{n}"), actor="test"
    )


async def read_all(log: EventLog, start: dict[int, int] | None = None) -> list[Record]:
    return [record async for record in log.read(start)]


def by_partition(records: Iterable[Record]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for record in records:
        out[record.position.partition].append(record.position.offset)
    return out


async def test_a_new_log_is_empty(log: EventLog) -> None:
    assert log.partitions == PARTITIONS
    assert await log.end_positions() == dict.fromkeys(range(PARTITIONS), 0)
    assert await read_all(log) == []


async def test_every_event_type_roundtrips_through_the_log(log: EventLog) -> None:
    sent = [envelope(e, pre) for e, pre in every_event()]
    positions = [await log.append(env) for env in sent]
    records = await read_all(log)
    got = {r.unwrap().event_id: (r.position, r.unwrap()) for r in records}
    for env, position in zip(sent, positions, strict=True):
        assert got[env.event_id] == (position, env)
        assert position.partition == partition_for(env.partition_key, PARTITIONS)
    assert all(r.raw and r.timestamp_ms > 0 and r.error is None for r in records)


async def test_positions_are_dense_and_monotonic_per_partition(log: EventLog) -> None:
    envelopes = [promote(f"ns{i % 7}", "w", i) for i in range(70)]
    positions = [await log.append(env) for env in envelopes[:30]]
    positions += await log.append_many(envelopes[30:])
    per_partition: dict[int, list[int]] = defaultdict(list)
    for position in positions:
        per_partition[position.partition].append(position.offset)
    for offsets in per_partition.values():
        assert offsets == list(range(len(offsets)))
    ends = await log.end_positions()
    assert ends == {p: len(per_partition.get(p, [])) for p in range(PARTITIONS)}


async def test_each_aggregate_keeps_its_append_order(log: EventLog) -> None:
    workers = [("acme", "api"), ("acme", "web"), ("globex", "api"), ("initech", "cron")]
    envelopes = [promote(ns, w, n) for n in range(40) for ns, w in workers]
    for env in envelopes[:80]:
        await log.append(env)
    await log.append_many(envelopes[80:])
    seen: dict[str, list[str]] = defaultdict(list)
    partitions: dict[str, set[int]] = defaultdict(set)
    for record in await read_all(log):
        env = record.unwrap()
        assert isinstance(env.payload, VersionPromoted)
        seen[env.aggregate_id].append(env.payload.version_id)
        partitions[env.payload.namespace].add(record.position.partition)
    for ns, w in workers:
        assert seen[f"{ns}/{w}"] == [f"v{n}" for n in range(40)]
    # One namespace, one partition: the projector may check cross-aggregate rules.
    assert all(len(p) == 1 for p in partitions.values())


async def test_read_from_a_position_and_until(log: EventLog) -> None:
    positions = await log.append_many([promote("acme", "api", n) for n in range(20)])
    partition = positions[0].partition
    tail = await read_all(log, {partition: 12})
    assert [r.position for r in tail] == positions[12:]
    window = [r async for r in log.read({partition: 5}, until={partition: 9})]
    assert [r.position for r in window] == positions[5:9]
    assert await read_all(log, {partition: 20}) == []
    batches = [b async for b in log.read_batches({partition: 0}, max_batch=6)]
    assert [r.position for b in batches for r in b] == positions
    assert all(0 < len(b) <= 6 for b in batches)


async def test_tail_sees_new_appends(log: EventLog) -> None:
    await log.append(promote("acme", "api", 0))
    # Explicit start positions: a tail begun with start=None would race the appends below.
    start = await log.end_positions()
    received: list[Envelope] = []

    async def follow() -> None:
        async with contextlib.aclosing(log.tail(start)) as stream:
            async for record in stream:
                received.append(record.unwrap())
                if len(received) == 5:
                    return

    follower = asyncio.create_task(follow())
    sent = [promote("acme", "api", n) for n in range(1, 4)]
    sent += [promote("globex", "web", n) for n in range(2)]
    for env in sent:
        await log.append(env)
        await asyncio.sleep(0)
    await asyncio.wait_for(follower, timeout=60)
    assert sorted(e.event_id.bytes for e in received) == sorted(e.event_id.bytes for e in sent)


async def test_tail_from_a_position_catches_up_then_follows(log: EventLog) -> None:
    first = await log.append_many([promote("acme", "api", n) for n in range(3)])
    partition = first[0].partition
    got: list[Position] = []
    async with contextlib.aclosing(log.tail({partition: 1})) as stream:
        later = asyncio.create_task(log.append(promote("acme", "api", 3)))
        async for record in stream:
            got.append(record.position)
            if len(got) == 3:
                break
        await later
    assert got == [Position(partition, 1), Position(partition, 2), Position(partition, 3)]


async def test_appends_survive_a_restart_of_the_process(open_log: OpenLog) -> None:
    async with open_log() as log:
        before = await log.append_many([promote(f"ns{n % 3}", "w", n) for n in range(30)])
        stored = sorted((r.position, r.unwrap().event_id) for r in await read_all(log))
    # A new adapter instance on the same store is what a restarted process sees.
    async with open_log(partitions=None) as reopened:
        assert reopened.partitions == PARTITIONS
        records = await read_all(reopened)
        # Only per-partition order is promised; compare by position.
        assert sorted((r.position, r.unwrap().event_id) for r in records) == stored
        assert [p for p, _ in stored] == sorted(before)
        after = await reopened.append(promote("ns0", "w", 99))
        ends_before = Counter(p.partition for p in before)
        assert after.offset == ends_before[after.partition]


async def test_a_different_partition_count_is_refused_on_reopen(open_log: OpenLog) -> None:
    async with open_log() as log:
        await log.append(promote("acme", "api", 1))
    with pytest.raises(PartitionCountMismatch) as info:
        async with open_log(partitions=PARTITIONS + 1):
            pass
    assert (info.value.existing, info.value.configured) == (PARTITIONS, PARTITIONS + 1)


async def test_concurrent_appenders_lose_nothing(open_log: OpenLog, log: EventLog) -> None:
    async with open_log() as second:

        async def appender(target: EventLog, n: int) -> list[tuple[uuid.UUID, Position]]:
            out = []
            for i in range(25):
                env = promote(f"ns{(n + i) % 5}", f"w{n}", i)
                out.append((env.event_id, await target.append(env)))
            return out

        results = await asyncio.gather(*(appender(log if n % 2 else second, n) for n in range(16)))
    acknowledged = dict(pair for result in results for pair in result)
    assert len(acknowledged) == 400
    assert len(set(acknowledged.values())) == 400
    records = await read_all(log)
    assert {r.unwrap().event_id: r.position for r in records} == acknowledged
    for offsets in by_partition(records).values():
        assert offsets == list(range(len(offsets)))
    # Each appender's events to one aggregate stay in its order.
    order: dict[str, list[str]] = defaultdict(list)
    for record in records:
        payload = record.unwrap().payload
        assert isinstance(payload, VersionPromoted)
        order[f"{payload.namespace}/{payload.worker}"].append(payload.version_id)
    for versions in order.values():
        assert versions == sorted(versions, key=lambda v: int(v[1:]))


async def test_a_retried_append_is_recognisable_by_event_id(log: EventLog) -> None:
    env = promote("acme", "api", 1)
    # A caller that saw LogUnavailable(outcome_unknown=True) retries the same envelope.
    first = await log.append(env)
    second = await log.append(env)
    assert first != second
    records = await read_all(log)
    assert [r.unwrap().event_id for r in records] == [env.event_id, env.event_id]
    assert len({r.unwrap().event_id for r in records}) == 1


async def test_bad_input_is_refused_with_nothing_written(log: EventLog) -> None:
    good = promote("acme", "api", 1)
    forged = msgspec.structs.replace(
        good, payload=VersionPromoted(namespace="Bad Name", worker="api", version_id="v1")
    )
    with pytest.raises(InvalidEvent):
        await log.append(forged)
    with pytest.raises(InvalidEvent):
        await log.append_many([good, promote("acme", "api", 2), forged])
    mismatched = msgspec.structs.replace(good, aggregate_id="acme/other")
    with pytest.raises(InvalidEvent):
        await log.append(mismatched)
    assert await log.end_positions() == dict.fromkeys(range(PARTITIONS), 0)


async def test_oversized_events_are_refused_before_writing(open_log: OpenLog) -> None:
    async with open_log(max_event_bytes=4096) as log:
        small = Envelope.new(SecretPut(namespace="acme", name="K", sealed=sealed()), actor="t")
        huge_secret = msgspec.structs.replace(sealed(), ciphertext=b"x" * 8000)
        huge = Envelope.new(SecretPut(namespace="acme", name="K", sealed=huge_secret), actor="t")
        with pytest.raises(EventTooLarge) as info:
            await log.append(huge)
        assert info.value.limit == 4096 and info.value.size > 4096
        assert info.value.as_dict()["code"] == "event_too_large"
        with pytest.raises(EventTooLarge):
            await log.append_many([small, huge])
        assert await log.end_positions() == dict.fromkeys(range(PARTITIONS), 0)
        await log.append(small)
        assert sum((await log.end_positions()).values()) == 1


async def test_undecodable_records_are_surfaced_not_fatal(log: EventLog) -> None:
    good = promote("acme", "api", 1)
    partition = partition_for("acme", PARTITIONS)
    await log.append(good)
    # write_prepared is the raw write under append(): bytes from a foreign or broken writer.
    await log.write_prepared([PreparedEvent(partition, "acme", b"\x93garbage", uuid.uuid4())])
    await log.append(promote("acme", "api", 2))
    records = await read_all(log, {partition: 0})
    assert [r.error is None for r in records] == [True, False, True]
    broken = records[1]
    assert broken.envelope is None and broken.raw == b"\x93garbage"
    assert broken.error is not None and broken.error.code == "undecodable_event"


async def test_using_a_log_before_start_is_a_clear_error(open_log: OpenLog) -> None:
    log = open_log()
    with pytest.raises(LogNotStarted):
        await log.append(Envelope.new(NamespaceCreated(namespace="acme"), actor="t"))
    with pytest.raises(LogNotStarted):
        await log.end_positions()
