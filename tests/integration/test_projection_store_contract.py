"""One contract for every projection store: in-memory (embedded) and Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping

import pytest

from harness.endpoints import Endpoints
from projections.changes import Changes
from projections.memory_store import MemoryProjectionStore
from projections.redis_store import RedisProjectionStore
from projections.store import GenerationMissing, ProjectionStore, StalePosition, digest_of


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest, services: Endpoints
                ) -> AsyncIterator[ProjectionStore]:
    s: ProjectionStore
    if request.param == "memory":
        s = MemoryProjectionStore()
    else:
        assert services.redis_url is not None
        s = RedisProjectionStore(services.redis_url, prefix=f"test-{uuid.uuid4().hex[:10]}:")
    async with s:
        yield s


def changes(positions: dict[int, int], **fields: Mapping[str, str | None]) -> Changes:
    c = Changes()
    for key, values in fields.items():
        for name, value in values.items():
            if value is None:
                c.delete(key, name)
            else:
                c.set(key, name, value)
    c.positions.update(positions)
    return c


async def test_apply_then_read_current_generation(store: ProjectionStore) -> None:
    gen = await store.current_generation()
    assert await store.current_generation() == gen
    await store.apply(gen, changes({0: 3}, routes={"api": "v1", "web": "v2"}), {})
    assert await store.hget("routes", "api") == "v1"
    assert await store.hgetall("routes") == {"api": "v1", "web": "v2"}
    assert await store.applied(gen) == {0: 3}
    await store.apply(gen, changes({0: 5}, routes={"api": None}), {0: 3})
    assert await store.hgetall("routes") == {"web": "v2"}
    assert await store.hget("routes", "missing") is None


async def test_hget_many_reads_fields_of_the_current_generation(store: ProjectionStore) -> None:
    live = await store.current_generation()
    await store.apply(live, changes({0: 3}, routes={"api": "v1"}, hosts={"a": "1"}), {})
    fields = [("routes", "api"), ("hosts", "missing"), ("nothing", "x"), ("applied", "0"),
              ("hosts", "a")]
    assert await store.hget_many(fields) == ["v1", None, None, "3", "1"]
    assert await store.hget_many([]) == []
    shadow = await store.new_generation()
    await store.apply(shadow, changes({0: 3}, routes={"api": "v2"}), {})
    assert (await store.hget_many(fields))[0] == "v1"  # until the switch
    assert await store.switch(shadow, not_behind=live)
    assert await store.hget_many(fields) == ["v2", None, None, "3", None]


async def test_compare_and_set_refuses_a_stale_writer(store: ProjectionStore) -> None:
    gen = await store.current_generation()
    await store.apply(gen, changes({1: 10}, hosts={"a": "1"}), {})
    with pytest.raises(StalePosition):
        await store.apply(gen, changes({1: 8}, hosts={"a": "stale"}), {1: 5})
    assert await store.hget("hosts", "a") == "1"
    assert await store.applied(gen) == {1: 10}
    # Partitions are independent: another partition's writer is not affected.
    await store.apply(gen, changes({2: 1}, hosts={"b": "2"}), {})
    assert await store.applied(gen) == {1: 10, 2: 1}


async def test_dropped_keys_go_before_new_fields(store: ProjectionStore) -> None:
    gen = await store.current_generation()
    await store.apply(gen, changes({0: 1}, **{"versions:a/b": {"v1": "x", "v2": "y"}}), {})
    c = Changes()
    c.drop("versions:a/b")
    c.set("versions:a/b", "v3", "z")
    c.positions[0] = 2
    await store.apply(gen, c, {0: 1})
    assert await store.hgetall("versions:a/b") == {"v3": "z"}


async def test_shadow_generation_switches_atomically(store: ProjectionStore) -> None:
    live = await store.current_generation()
    await store.apply(live, changes({0: 4}, routes={"api": "v1"}), {})
    shadow = await store.new_generation()
    assert shadow != live
    await store.apply(shadow, changes({0: 3}, routes={"api": "v2"}), {})
    # Readers still see the live generation while the shadow fills.
    assert await store.hget("routes", "api") == "v1"
    # Behind the live generation: the switch is refused and nothing changes.
    assert not await store.switch(shadow, not_behind=live)
    assert await store.current_generation() == live
    await store.apply(shadow, changes({0: 4}, routes={"api": "v2"}), {0: 3})
    assert await store.switch(shadow, not_behind=live)
    assert await store.current_generation() == shadow
    assert await store.hget("routes", "api") == "v2"
    await store.drop_generation(live)
    assert live not in await store.generations()
    with pytest.raises(GenerationMissing):
        await store.apply(live, changes({0: 5}, routes={"api": "zombie"}), {0: 4})
    with pytest.raises(ValueError):
        await store.drop_generation(shadow)


async def test_dump_and_digest_cover_everything(store: ProjectionStore) -> None:
    gen = await store.current_generation()
    await store.apply(gen, changes({0: 2}, a={"x": "1"}, b={"y": "2"}), {})
    dump = await store.dump(gen)
    assert dump == {"a": {"x": "1"}, "b": {"y": "2"}, "applied": {"0": "2"}}
    assert await store.digest(gen) == digest_of(dump)
    other = await store.new_generation()
    await store.apply(other, changes({0: 2}, a={"x": "1"}, b={"y": "3"}), {})
    assert await store.digest(other) != await store.digest(gen)


async def test_wait_for_change_wakes_on_apply(store: ProjectionStore) -> None:
    import asyncio

    gen = await store.current_generation()
    waiter = asyncio.create_task(store.wait_for_change(5.0))
    await asyncio.sleep(0.05)
    await store.apply(gen, changes({0: 1}, a={"x": "1"}), {})
    await asyncio.wait_for(waiter, 5.0)
    assert waiter.done()
