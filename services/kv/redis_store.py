"""KV on Redis: one hash per entry plus a sorted set per resource for listing.

Layout (docs/kv.md), with `{ns/res}` a hash tag so one resource's keys share a
cluster slot:

- `<prefix>{ns/res}:v:<key>` hash: `v` value bytes, `m` metadata JSON (absent
  when none), `e` expiration seconds (empty when none); EXPIREAT on the hash
  when it expires, so Redis drops the value itself.
- `<prefix>{ns/res}:i` sorted set, every member score 0: the key names, so
  ZRANGEBYLEX pages them in byte order (UTF-8 order).

A put or delete changes both in one MULTI/EXEC. Index members whose hash has
expired are removed lazily by the list script when it meets them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from services.kv.port import (
    MAX_LIST_LIMIT,
    KvEntry,
    KvKey,
    KvPage,
    KvStore,
    decode_cursor,
    encode_cursor,
    now_s,
    prefix_upper_bound,
)

DEFAULT_PREFIX = "wdlkv:"
_PURGE_BATCH = 500

# KEYS[1] index; ARGV: value-key prefix, min, max, limit, now.
# Returns {more, name1, metadata1|false, expiration1, name2, ...}. Reads at most a
# few batches past expired members, which it removes from the index as it goes.
_LIST = """
local limit = tonumber(ARGV[4])
local now = tonumber(ARGV[5])
local out = {0}
local found = 0
local min = ARGV[2]
while true do
  local names = redis.call('ZRANGEBYLEX', KEYS[1], min, ARGV[3], 'LIMIT', 0, limit + 1)
  for _, name in ipairs(names) do
    local f = redis.call('HMGET', ARGV[1] .. name, 'm', 'e')
    local e = f[2]
    if e == false or (e ~= '' and tonumber(e) <= now) then
      redis.call('ZREM', KEYS[1], name)
    else
      if found == limit then
        out[1] = 1
        return out
      end
      out[#out + 1] = name
      out[#out + 1] = f[1]
      out[#out + 1] = e
      found = found + 1
    end
  end
  if #names <= limit then
    return out
  end
  min = '(' .. names[#names]
end
"""


class RedisKvStore(KvStore):
    def __init__(self, url: str, *, prefix: str = DEFAULT_PREFIX) -> None:
        self.url = url
        self.prefix = prefix
        self._redis: aioredis.Redis | None = None
        self._list: Any = None

    async def start(self) -> None:
        self._redis = aioredis.Redis.from_url(self.url, decode_responses=False)
        await self._redis.ping()
        self._list = self._redis.register_script(_LIST)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    @property
    def redis(self) -> aioredis.Redis:
        if self._redis is None:
            raise RuntimeError("RedisKvStore is not started")
        return self._redis

    def _base(self, namespace: str, resource: str) -> bytes:
        return f"{self.prefix}{{{namespace}/{resource}}}:".encode()

    async def get(self, namespace: str, resource: str, key: str) -> KvEntry | None:
        vkey = self._base(namespace, resource) + b"v:" + key.encode()
        raw = await self.redis.hmget(vkey, [b"v", b"m", b"e"])  # type: ignore[arg-type,misc]
        return _entry(raw, now_s())

    async def get_many(self, namespace: str, resource: str,
                       keys: Sequence[str]) -> list[KvEntry | None]:
        base = self._base(namespace, resource) + b"v:"
        pipe = self.redis.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(base + key.encode(), [b"v", b"m", b"e"])  # type: ignore[arg-type]
        now = now_s()
        return [_entry(raw, now) for raw in await pipe.execute()]

    async def put(self, namespace: str, resource: str, key: str, value: bytes, *,
                  expiration: int | None = None, metadata: str | None = None) -> None:
        base = self._base(namespace, resource)
        name = key.encode()
        vkey = base + b"v:" + name
        fields: dict[bytes, bytes] = {
            b"v": value, b"e": b"" if expiration is None else str(expiration).encode()}
        if metadata is not None:
            fields[b"m"] = metadata.encode()
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(vkey)
        pipe.hset(vkey, mapping=fields)  # type: ignore[arg-type]
        if expiration is not None:
            pipe.expireat(vkey, expiration)
        pipe.zadd(base + b"i", {name: 0})
        await pipe.execute()

    async def delete(self, namespace: str, resource: str, key: str) -> None:
        base = self._base(namespace, resource)
        name = key.encode()
        pipe = self.redis.pipeline(transaction=True)
        pipe.delete(base + b"v:" + name)
        pipe.zrem(base + b"i", name)
        await pipe.execute()

    async def list(self, namespace: str, resource: str, *, prefix: str = "",
                   limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> KvPage:
        base = self._base(namespace, resource)
        low = b"[" + prefix.encode() if prefix else b"-"
        if cursor:
            after = decode_cursor(cursor).encode()
            if after >= prefix.encode():
                low = b"(" + after
        high = b"(" + prefix_upper_bound(prefix.encode()) if prefix else b"+"
        raw = await self._list(keys=[base + b"i"],
                               args=[base + b"v:", low, high, limit, now_s()])
        keys = [KvKey(raw[i].decode(),
                      int(raw[i + 2]) if raw[i + 2] else None,
                      raw[i + 1].decode() if raw[i + 1] is not None else None)
                for i in range(1, len(raw), 3)]
        more = bool(raw[0]) and bool(keys)
        return KvPage(keys, not more, encode_cursor(keys[-1].name) if more else None)

    async def purge(self, namespace: str, resource: str) -> int:
        base = self._base(namespace, resource)
        index = base + b"i"
        removed = 0
        while True:
            names = await self.redis.zrange(index, 0, _PURGE_BATCH - 1)
            if not names:
                break
            pipe = self.redis.pipeline(transaction=True)
            pipe.delete(*[base + b"v:" + n for n in names])
            pipe.zrem(index, *names)
            deleted, _ = await pipe.execute()
            removed += int(deleted)
        await self.redis.delete(index)
        return removed


def _entry(raw: list[bytes | None], now: int) -> KvEntry | None:
    value, metadata, expiration = raw
    if value is None:
        return None
    exp = int(expiration) if expiration else None
    if exp is not None and exp <= now:
        return None
    return KvEntry(value, metadata.decode() if metadata is not None else None, exp)
