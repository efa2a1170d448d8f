"""Verdicts carried in the Redis store's change notifications (projections/redis_store.py).

A command's waiter trusts a notification's verdict only when it was written to the
current generation; anything else (a rebuild's generation, a lost notification, an
event applied without a verdict) still ends in a read of the projection.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Sequence

import pytest

from harness.endpoints import Endpoints
from projections import keys
from projections.changes import Changes
from projections.reader import ProjectionReader, VerdictTimeout, VerdictView
from projections.redis_store import NOTICE_MAX_VERDICTS, RedisProjectionStore
from projections.store import StalePosition, VerdictWatch


class CountingStore(RedisProjectionStore):
    """Counts the reads a verdict wait makes."""

    reads = 0

    async def hget_many(self, fields: Sequence[tuple[str, str]]) -> list[str | None]:
        self.reads += 1
        return await super().hget_many(fields)


@pytest.fixture
async def store(services: Endpoints) -> AsyncIterator[CountingStore]:
    assert services.redis_url is not None
    async with CountingStore(services.redis_url,
                             prefix=f"test-{uuid.uuid4().hex[:10]}:") as s:
        await s.current_generation()
        await _until_live(s)
        yield s


async def _until_live(store: RedisProjectionStore) -> None:
    for _ in range(200):
        watch = store.watch_verdict("probe", 0)
        store.unwatch_verdict(watch)
        if watch.live:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the store never subscribed to its changes channel")


def _verdict(accepted: bool, offset: int, code: str | None = None) -> str:
    return json.dumps({"accepted": accepted, "code": code,
                       "message": "accepted" if accepted else "no", "partition": 0,
                       "offset": offset, "aggregate_version": offset + 1})


def _batch(offset: int, verdicts: dict[str, str], **extra: dict[str, str]) -> Changes:
    c = Changes()
    for event_id, doc in verdicts.items():
        c.set(keys.verdicts(0), event_id, doc)
    for key, fields in extra.items():
        for name, value in fields.items():
            c.set(key, name, value)
    c.positions[0] = offset + 1
    return c


async def _wait(reader: ProjectionReader, event_id: str, offset: int, timeout: float = 5.0,
                ) -> tuple[asyncio.Task[VerdictView], VerdictWatch]:
    context = reader.expect_verdict(event_id, 0)
    watch = context.__enter__()
    assert watch is not None

    async def waiting() -> VerdictView:
        try:
            return await reader.wait_verdict(event_id, 0, offset, timeout, watch=watch)
        finally:
            context.__exit__(None, None, None)

    task = asyncio.create_task(waiting())
    await asyncio.sleep(0.02)  # waiting on the watch
    return task, watch


async def test_the_notification_answers_without_a_read(store: CountingStore) -> None:
    reader = ProjectionReader(store)
    gen = await store.current_generation()
    event_id = str(uuid.uuid4())
    task, _ = await _wait(reader, event_id, 0)
    await store.apply(gen, _batch(0, {event_id: _verdict(False, 0, "stale_version")}), {})
    verdict = await asyncio.wait_for(task, 5)
    assert (verdict.accepted, verdict.code, verdict.offset) == (False, "stale_version", 0)
    assert store.reads == 0
    assert store._watches == set()  # unregistered once answered


async def test_a_lost_notification_ends_in_a_read(store: CountingStore) -> None:
    reader = ProjectionReader(store)
    gen = await store.current_generation()
    event_id = str(uuid.uuid4())
    task, watch = await _wait(reader, event_id, 0)
    # Written behind the store's back: no notification at all.
    await store.client.hset(store.key(gen, keys.verdicts(0)), event_id, _verdict(True, 0))
    await store.client.hset(store.key(gen, keys.APPLIED), "0", "1")
    verdict = await asyncio.wait_for(task, 5)
    assert verdict.accepted and verdict.aggregate_version == 1
    assert watch.verdict is None
    assert store.reads >= 1


async def test_a_rebuild_generation_is_not_trusted(store: CountingStore) -> None:
    reader = ProjectionReader(store)
    live = await store.current_generation()
    shadow = await store.new_generation()
    event_id = str(uuid.uuid4())
    task, watch = await _wait(reader, event_id, 0, timeout=0.5)
    await store.apply(shadow, _batch(0, {event_id: _verdict(False, 0, "from_shadow")}), {})
    with pytest.raises(VerdictTimeout):
        await task
    assert watch.verdict is None

    task, watch = await _wait(reader, event_id, 0)
    await store.apply(live, _batch(0, {event_id: _verdict(True, 0)}), {})
    assert (await asyncio.wait_for(task, 5)).accepted
    assert watch.verdict is not None


async def test_applied_without_a_verdict_is_read_as_dead_lettered(store: CountingStore,
                                                                  ) -> None:
    reader = ProjectionReader(store)
    gen = await store.current_generation()
    event_id = str(uuid.uuid4())
    task, _ = await _wait(reader, event_id, 0)
    await store.apply(gen, _batch(0, {}, hosts={"a": "1"}), {})
    verdict = await asyncio.wait_for(task, 5)
    assert (verdict.accepted, verdict.code) == (False, "dead_lettered")
    assert store.reads >= 1


async def test_a_batch_with_many_verdicts_leaves_them_to_reads(store: CountingStore) -> None:
    reader = ProjectionReader(store)
    gen = await store.current_generation()
    ids = [str(uuid.uuid4()) for _ in range(NOTICE_MAX_VERDICTS + 1)]
    task, watch = await _wait(reader, ids[-1], 0)
    await store.apply(gen, _batch(0, {i: _verdict(True, 0) for i in ids}), {})
    assert (await asyncio.wait_for(task, 5)).accepted
    assert watch.verdict is None
    assert store.reads >= 1


async def test_a_large_batch_is_one_transaction_that_still_notifies(store: CountingStore,
                                                                   ) -> None:
    """Beyond the script's bounds the batch goes through WATCH / MULTI ... EXEC."""
    reader = ProjectionReader(store)
    gen = await store.current_generation()
    event_id = str(uuid.uuid4())
    many = {f"f{i}": str(i) for i in range(3000)}
    task, watch = await _wait(reader, event_id, 0)
    await store.apply(gen, _batch(0, {event_id: _verdict(True, 0)}, big=many), {})
    assert (await asyncio.wait_for(task, 5)).accepted
    assert watch.verdict is not None
    assert await store.hgetall("big") == many
    before = store.written["transactions"]
    with pytest.raises(StalePosition):
        await store.apply(gen, _batch(5, {}, big={"f0": "stale", **many}), {0: 5})
    assert await store.hget("big", "f0") == "0"
    assert store.written["transactions"] == before
