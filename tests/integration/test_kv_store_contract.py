"""One contract for every KvStore adapter: an abstract suite, subclassed per backend.

Redis runs against the real server of the test services under a fresh prefix;
SQLite on a temp file. Expiry is exercised by putting an expiration in the past
straight into the store (the port accepts any; the limits live at the edges).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from harness.endpoints import Endpoints
from services.kv.factory import InvalidKvUrl, kv_store_from_url, open_kv_store
from services.kv.port import InvalidCursor, KvEntry, KvKey, KvStore
from services.kv.redis_store import RedisKvStore
from services.kv.sqlite_store import SqliteKvStore

pytestmark = pytest.mark.integration

NS, RES = "tenant-a", "kv1"


class KvStoreContract:
    """Every test gets a started, empty store from the subclass's `store` fixture."""

    async def test_get_missing(self, store: KvStore) -> None:
        assert await store.get(NS, RES, "nope") is None

    async def test_put_get_roundtrip_binary(self, store: KvStore) -> None:
        value = bytes(range(256)) * 4
        await store.put(NS, RES, "bin", value)
        assert await store.get(NS, RES, "bin") == KvEntry(value, None, None)

    async def test_metadata_and_expiration_roundtrip(self, store: KvStore) -> None:
        exp = int(time.time()) + 3600
        await store.put(NS, RES, "k", b"v", expiration=exp, metadata='{"a":[1,"é"]}')
        assert await store.get(NS, RES, "k") == KvEntry(b"v", '{"a":[1,"é"]}', exp)

    async def test_empty_value(self, store: KvStore) -> None:
        await store.put(NS, RES, "empty", b"")
        assert await store.get(NS, RES, "empty") == KvEntry(b"")

    async def test_put_replaces_whole_entry(self, store: KvStore) -> None:
        await store.put(NS, RES, "k", b"one", metadata='{"v":1}',
                        expiration=int(time.time()) + 600)
        await store.put(NS, RES, "k", b"two")
        assert await store.get(NS, RES, "k") == KvEntry(b"two")
        page = await store.list(NS, RES)
        assert page.keys == [KvKey("k")]

    async def test_delete(self, store: KvStore) -> None:
        await store.put(NS, RES, "k", b"v")
        await store.delete(NS, RES, "k")
        await store.delete(NS, RES, "never")
        assert await store.get(NS, RES, "k") is None
        assert (await store.list(NS, RES)).keys == []

    async def test_expired_entry_disappears_everywhere(self, store: KvStore) -> None:
        past = int(time.time()) - 5
        await store.put(NS, RES, "gone", b"v", expiration=past)
        await store.put(NS, RES, "kept", b"v")
        assert await store.get(NS, RES, "gone") is None
        assert await store.get_many(NS, RES, ["gone", "kept"]) == [None, KvEntry(b"v")]
        page = await store.list(NS, RES)
        assert [k.name for k in page.keys] == ["kept"]
        assert page.list_complete

    async def test_get_many_in_request_order(self, store: KvStore) -> None:
        await store.put(NS, RES, "b", b"2", metadata="7")
        await store.put(NS, RES, "a", b"1")
        got = await store.get_many(NS, RES, ["b", "missing", "a", "b"])
        assert got == [KvEntry(b"2", "7"), None, KvEntry(b"1"), KvEntry(b"2", "7")]
        assert await store.get_many(NS, RES, []) == []

    async def test_list_utf8_byte_order_with_metadata(self, store: KvStore) -> None:
        names = ["b", "a", "Z", "é", "z", "\U0001F600", "\uFFFD", "a/b", "a\x00"]
        exp = int(time.time()) + 900
        for n in names:
            await store.put(NS, RES, n, b"x", metadata='{"n":1}' if n == "z" else None,
                            expiration=exp if n == "b" else None)
        page = await store.list(NS, RES)
        assert [k.name for k in page.keys] == sorted(names, key=lambda s: s.encode())
        by_name = {k.name: k for k in page.keys}
        assert by_name["z"] == KvKey("z", None, '{"n":1}')
        assert by_name["b"] == KvKey("b", exp, None)
        assert page.list_complete and page.cursor is None

    async def test_list_prefix(self, store: KvStore) -> None:
        for n in ["p", "p/1", "p/2", "p0", "q/1", "o/1", "p/\U0001F600"]:
            await store.put(NS, RES, n, b"x")
        page = await store.list(NS, RES, prefix="p/")
        assert [k.name for k in page.keys] == ["p/1", "p/2", "p/\U0001F600"]
        assert [k.name for k in (await store.list(NS, RES, prefix="zz")).keys] == []

    async def test_list_pagination_with_cursor(self, store: KvStore) -> None:
        names = [f"k{i:03d}" for i in range(25)]
        for n in reversed(names):
            await store.put(NS, RES, n, b"x")
        await store.put(NS, RES, "other", b"x")
        seen: list[str] = []
        cursor: str | None = None
        pages = 0
        while True:
            page = await store.list(NS, RES, prefix="k", limit=10, cursor=cursor)
            pages += 1
            seen += [k.name for k in page.keys]
            if page.list_complete:
                assert page.cursor is None
                break
            assert page.cursor
            cursor = page.cursor
        assert seen == names
        assert pages == 3

    async def test_exact_page_has_no_cursor(self, store: KvStore) -> None:
        for n in ["a", "b"]:
            await store.put(NS, RES, n, b"x")
        page = await store.list(NS, RES, limit=2)
        assert [k.name for k in page.keys] == ["a", "b"]
        assert page.list_complete and page.cursor is None

    async def test_pagination_skips_expired_keys(self, store: KvStore) -> None:
        past = int(time.time()) - 5
        for i in range(12):
            await store.put(NS, RES, f"k{i:02d}", b"x", expiration=past if i % 2 else None)
        first = await store.list(NS, RES, limit=3)
        assert [k.name for k in first.keys] == ["k00", "k02", "k04"]
        assert not first.list_complete
        rest = await store.list(NS, RES, limit=3, cursor=first.cursor)
        assert [k.name for k in rest.keys] == ["k06", "k08", "k10"]
        assert rest.list_complete

    async def test_bad_cursor(self, store: KvStore) -> None:
        with pytest.raises(InvalidCursor):
            await store.list(NS, RES, cursor="!!!not base64\xff")

    async def test_resources_and_namespaces_are_isolated(self, store: KvStore) -> None:
        await store.put(NS, RES, "shared", b"a")
        await store.put(NS, "kv2", "shared", b"b")
        await store.put("tenant-b", RES, "shared", b"c")
        # A name that would collide if the key layout were a plain concatenation.
        await store.put(NS, RES + "/x", "y", b"d")
        assert (await store.get(NS, RES, "shared")) == KvEntry(b"a")
        assert (await store.get(NS, "kv2", "shared")) == KvEntry(b"b")
        assert (await store.get("tenant-b", RES, "shared")) == KvEntry(b"c")
        assert [k.name for k in (await store.list(NS, RES)).keys] == ["shared"]
        assert await store.get(NS, RES, "x/y") is None

    async def test_purge_removes_one_resource_only(self, store: KvStore) -> None:
        for i in range(1200):  # more than one purge batch
            await store.put(NS, RES, f"k{i}", b"x")
        await store.put(NS, "kv2", "k1", b"keep")
        assert await store.purge(NS, RES) == 1200
        assert (await store.list(NS, RES)).keys == []
        assert await store.get(NS, RES, "k1") is None
        assert await store.get(NS, "kv2", "k1") == KvEntry(b"keep")
        assert await store.purge(NS, RES) == 0

    async def test_large_value(self, store: KvStore) -> None:
        value = b"\xab" * (25 * 1024 * 1024)
        await store.put(NS, RES, "big", value)
        got = await store.get(NS, RES, "big")
        assert got is not None and got.value == value


class TestRedisKvStore(KvStoreContract):
    @pytest.fixture
    async def store(self, services: Endpoints) -> AsyncIterator[KvStore]:
        assert services.redis_url is not None
        prefix = f"test-kv-{uuid.uuid4().hex[:10]}:"
        async with open_kv_store(f"{services.redis_url}?prefix={prefix}") as s:
            assert isinstance(s, RedisKvStore) and s.prefix == prefix
            yield s
        raw = aioredis.Redis.from_url(services.redis_url)
        try:
            left = [k async for k in raw.scan_iter(match=f"{prefix}*")]
            if left:
                await raw.delete(*left)
        finally:
            await raw.aclose()

    async def test_expired_index_members_removed_lazily(self, store: KvStore) -> None:
        assert isinstance(store, RedisKvStore)
        await store.put(NS, RES, "gone", b"v", expiration=int(time.time()) - 1)
        index = store._base(NS, RES) + b"i"
        assert await store.redis.zcard(index) == 1
        assert (await store.list(NS, RES)).keys == []
        assert await store.redis.zcard(index) == 0

    async def test_data_lives_under_the_prefix(self, store: KvStore) -> None:
        assert isinstance(store, RedisKvStore)
        await store.put(NS, RES, "k", b"v")
        found = [k async for k in store.redis.scan_iter(match=f"{store.prefix}*")]
        assert sorted(found) == sorted([f"{store.prefix}{{{NS}/{RES}}}:v:k".encode(),
                                        f"{store.prefix}{{{NS}/{RES}}}:i".encode()])


class TestSqliteKvStore(KvStoreContract):
    @pytest.fixture
    async def store(self, tmp_path: Path) -> AsyncIterator[KvStore]:
        async with open_kv_store(f"sqlite:///{tmp_path / 'kv.sqlite'}") as s:
            assert isinstance(s, SqliteKvStore)
            yield s

    async def test_data_survives_reopen(self, tmp_path: Path) -> None:
        url = f"sqlite:///{tmp_path / 'again.sqlite'}"
        async with open_kv_store(url) as s:
            await s.put(NS, RES, "k", b"v", metadata='"m"')
        async with open_kv_store(url) as s:
            assert await s.get(NS, RES, "k") == KvEntry(b"v", '"m"')


def test_factory_urls(tmp_path: Path) -> None:
    redis_store = kv_store_from_url("redis://127.0.0.1:6379/2?prefix=x:&socket_timeout=5")
    assert isinstance(redis_store, RedisKvStore)
    assert redis_store.prefix == "x:"
    assert redis_store.url == "redis://127.0.0.1:6379/2?socket_timeout=5"
    assert isinstance(kv_store_from_url("redis://h:1/0"), RedisKvStore)
    sqlite_store = kv_store_from_url(f"sqlite:///{tmp_path}/kv.sqlite")
    assert isinstance(sqlite_store, SqliteKvStore)
    assert sqlite_store.path == tmp_path / "kv.sqlite"
    for bad in ("memcached://x", "sqlite://", "redis://h/0?prefix="):
        with pytest.raises(InvalidKvUrl):
            kv_store_from_url(bad)
