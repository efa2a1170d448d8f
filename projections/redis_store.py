"""The production projection store on Redis.

Layout (see docs/redis-keys.md): ``{prefix}current`` names the generation
readers use; generation N's keys live under ``{prefix}g{N}:``. Reads of the
current generation go through small Lua scripts so the pointer lookup and the
read are one atomic step: a reader can never mix two generations.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import hiredis
import redis.asyncio as aioredis

from projections import keys
from projections.changes import Changes
from projections.store import GenerationMissing, ProjectionStore, StalePosition

_HGET = """
local g = redis.call('GET', KEYS[1])
if not g then return false end
return redis.call('HGET', ARGV[1] .. 'g' .. g .. ':' .. ARGV[2], ARGV[3])
"""

# ARGV: prefix, then key, field pairs; one reply (a value or false) per pair.
_HGET_MANY = """
local g = redis.call('GET', KEYS[1])
local out = {}
for i = 2, #ARGV, 2 do
  if g then
    out[#out + 1] = redis.call('HGET', ARGV[1] .. 'g' .. g .. ':' .. ARGV[i], ARGV[i + 1])
  else
    out[#out + 1] = false
  end
end
return out
"""

_HGETALL = """
local g = redis.call('GET', KEYS[1])
if not g then return {} end
return redis.call('HGETALL', ARGV[1] .. 'g' .. g .. ':' .. ARGV[2])
"""

# Switch only when the new generation is not behind the reference one on any
# partition; evaluated atomically with the SET so no write can slip between.
_SWITCH = """
if ARGV[2] ~= '' then
  local theirs = redis.call('HGETALL', KEYS[3])
  for i = 1, #theirs, 2 do
    local mine = redis.call('HGET', KEYS[2], theirs[i])
    if (not mine) or tonumber(mine) < tonumber(theirs[i + 1]) then return 0 end
  end
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('PUBLISH', KEYS[4], cjson.encode({generation = tonumber(ARGV[1]), switched = true}))
return 1
"""


class RedisProjectionStore(ProjectionStore):
    def __init__(self, url: str, *, prefix: str = "wdl:") -> None:
        self.url = url
        self.prefix = prefix
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, Any] = {}
        self._listener: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        # What `apply` has written through this client (benchmarks compare against it).
        self.written = {"transactions": 0, "commands": 0, "arguments": 0, "bytes": 0,
                        "lost_races": 0}

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        self._client = aioredis.Redis.from_url(self.url, decode_responses=True)
        await self._client.ping()
        self._scripts = {
            "hget": self._client.register_script(_HGET),
            "hget_many": self._client.register_script(_HGET_MANY),
            "hgetall": self._client.register_script(_HGETALL),
            "switch": self._client.register_script(_SWITCH),
        }

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._listener
            self._listener = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    @property
    def client(self) -> Any:
        # Typed as Any: redis-py's asyncio stubs mark every command as
        # "Awaitable[T] | T", which strict mypy cannot await.
        if self._client is None:
            raise RuntimeError("RedisProjectionStore is not started")
        return self._client

    # --- names ------------------------------------------------------------

    @property
    def _current_key(self) -> str:
        return f"{self.prefix}current"

    @property
    def _registry_key(self) -> str:
        return f"{self.prefix}generations"

    @property
    def changes_channel(self) -> str:
        return f"{self.prefix}changes"

    def key(self, generation: int, name: str) -> str:
        return f"{self.prefix}g{generation}:{name}"

    # --- generations ------------------------------------------------------

    async def current_generation(self) -> int:
        value = await self.client.get(self._current_key)
        if value is not None:
            return int(value)
        gen = await self.new_generation()
        # Another process may have initialised the store first: keep theirs.
        if await self.client.set(self._current_key, gen, nx=True):
            return gen
        await self.drop_generation(gen)
        return int(await self.client.get(self._current_key))

    async def new_generation(self) -> int:
        gen = int(await self.client.incr(f"{self.prefix}next_generation"))
        await self.client.sadd(self._registry_key, gen)
        return gen

    async def generations(self) -> list[int]:
        return sorted(int(g) for g in await self.client.smembers(self._registry_key))

    async def switch(self, generation: int, *, not_behind: int | None = None) -> bool:
        if not await self.client.sismember(self._registry_key, generation):
            raise GenerationMissing(f"generation {generation} does not exist")
        ref = self.key(not_behind, keys.APPLIED) if not_behind is not None else "-"
        done = await self._scripts["switch"](
            keys=[self._current_key, self.key(generation, keys.APPLIED), ref,
                  self.changes_channel],
            args=[generation, "" if not_behind is None else str(not_behind)],
        )
        return bool(done)

    async def drop_generation(self, generation: int) -> None:
        current = await self.client.get(self._current_key)
        if current is not None and int(current) == generation:
            raise ValueError("cannot drop the current generation")
        await self.client.srem(self._registry_key, generation)
        batch: list[str] = []
        async for key in self.client.scan_iter(match=self.key(generation, "*"), count=2000):
            batch.append(key)
            if len(batch) >= 2000:
                await self.client.unlink(*batch)
                batch.clear()
        if batch:
            await self.client.unlink(*batch)

    # --- writing ----------------------------------------------------------

    async def applied(self, generation: int) -> dict[int, int]:
        raw = await self.client.hgetall(self.key(generation, keys.APPLIED))
        return {int(p): int(o) for p, o in raw.items()}

    async def apply(self, generation: int, changes: Changes,
                    expected: Mapping[int, int]) -> None:
        """WATCH the positions, check them, then MULTI … EXEC the whole batch.

        Commands are packed by hiredis in C and sent as one buffer: a rebuild
        writes tens of thousands of fields per batch, and redis-py's
        pure-Python packer of the asyncio client would dominate the cost.
        """
        applied_key = self.key(generation, keys.APPLIED)
        commands = _batch_commands(self, generation, changes)
        # Packed before the WATCH: the shorter the WATCH … EXEC window, the
        # less often writers of other partitions (parallel rebuild workers
        # share the applied hash) make each other retry.
        packed = [hiredis.pack_command(("MULTI",))]
        packed.extend(hiredis.pack_command(cmd) for cmd in commands)  # type: ignore[arg-type]
        packed.append(hiredis.pack_command(("EXEC",)))
        body = b"".join(packed)
        del packed
        pool = self.client.connection_pool
        conn = await pool.get_connection()
        try:
            # Sent together: one round trip instead of three on every live batch
            # (a command's verdict waits for it).
            checks = (("WATCH", applied_key, self._registry_key),
                      ("SISMEMBER", self._registry_key, generation), ("HGETALL", applied_key))
            await conn.send_packed_command(
                b"".join(hiredis.pack_command(c) for c in checks),  # type: ignore[arg-type]
                check_health=False)
            await conn.read_response()
            registered = int(await conn.read_response())
            flat = await conn.read_response()
            if not registered:
                await _unwatch(conn)
                raise GenerationMissing(f"generation {generation} was dropped")
            stored = {int(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
            for partition in changes.positions:
                if stored.get(partition, 0) != expected.get(partition, 0):
                    await _unwatch(conn)
                    raise StalePosition(
                        f"partition {partition} is at {stored.get(partition, 0)}, "
                        f"writer expected {expected.get(partition, 0)}")
            await conn.send_packed_command(body, check_health=False)
            for _ in range(len(commands) + 1):
                await conn.read_response()  # +OK for MULTI, +QUEUED for each command
            results = await conn.read_response()
        except BaseException:
            # A half-read connection must not go back to the pool.
            await conn.disconnect()
            raise
        finally:
            await pool.release(conn)
        if results is None:
            self.written["lost_races"] += 1
            raise StalePosition("applied positions changed during the write")
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            raise RuntimeError(f"Redis refused part of a batch: {errors[0]}")
        written = self.written
        written["transactions"] += 1
        written["commands"] += len(commands)
        written["arguments"] += sum(len(c) - 1 for c in commands)
        written["bytes"] += len(body)

    # --- reading ----------------------------------------------------------

    async def hget(self, key: str, field: str, *, generation: int | None = None) -> str | None:
        if generation is not None:
            value = await self.client.hget(self.key(generation, key), field)
            return None if value is None else str(value)
        value = await self._scripts["hget"](keys=[self._current_key],
                                            args=[self.prefix, key, field])
        return None if value is None else str(value)

    async def hget_many(self, fields: Sequence[tuple[str, str]]) -> list[str | None]:
        args = [self.prefix]
        for key, name in fields:
            args.extend((key, name))
        values = await self._scripts["hget_many"](keys=[self._current_key], args=args)
        return [None if v is None else str(v) for v in values]

    async def hgetall(self, key: str, *, generation: int | None = None) -> dict[str, str]:
        if generation is not None:
            raw = await self.client.hgetall(self.key(generation, key))
            return dict(raw)
        flat = await self._scripts["hgetall"](keys=[self._current_key],
                                              args=[self.prefix, key])
        return {flat[i]: flat[i + 1] for i in range(0, len(flat), 2)}

    async def dump(self, generation: int) -> dict[str, dict[str, str]]:
        strip = len(self.key(generation, ""))
        names: list[str] = [k async for k in self.client.scan_iter(
            match=self.key(generation, "*"), count=2000)]
        out: dict[str, dict[str, str]] = {}
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            async with self.client.pipeline(transaction=False) as pipe:
                for name in chunk:
                    pipe.hgetall(name)
                values = await pipe.execute()
            for name, value in zip(chunk, values, strict=True):
                if value:
                    out[name[strip:]] = dict(value)
        return out

    async def iter_sorted(self, generation: int, chunk: int = 500,
                          ) -> AsyncIterator[tuple[str, dict[str, str]]]:
        """Every key of a generation in sorted order, read a chunk at a time.

        What `dump` returns, without holding it all: verification streams
        the live or shadow generation through a digest and a comparison.
        """
        strip = len(self.key(generation, ""))
        # SCAN may return a key more than once; the digest must see it once.
        names = sorted({k async for k in self.client.scan_iter(
            match=self.key(generation, "*"), count=5000)})
        for i in range(0, len(names), chunk):
            part = names[i:i + chunk]
            async with self.client.pipeline(transaction=False) as pipe:
                for name in part:
                    pipe.hgetall(name)
                values = await pipe.execute()
            for name, value in zip(part, values, strict=True):
                if value:
                    yield name[strip:], value

    async def wait_for_change(self, timeout: float) -> None:
        if self._listener is None:
            self._listener = asyncio.create_task(self._listen())
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    async def _listen(self) -> None:
        # Wake-ups only; callers re-read positions, so a missed message costs
        # at most one timeout, never correctness.
        pubsub = self.client.pubsub()
        await pubsub.subscribe(self.changes_channel)
        try:
            async for message in pubsub.listen():
                if message.get("type") == "message":
                    self._changed.set()
                    self._changed = asyncio.Event()
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


def _batch_commands(store: RedisProjectionStore, generation: int,
                    changes: Changes) -> list[tuple[str | int, ...]]:
    commands: list[tuple[str | int, ...]] = []
    if changes.dropped:
        commands.append(("UNLINK", *(store.key(generation, k) for k in changes.dropped)))
    for name, fields in changes.fields.items():
        full = store.key(generation, name)
        dels = [f for f, v in fields.items() if v is None]
        if dels:
            commands.append(("HDEL", full, *dels))
        sets: list[str] = []
        for f, v in fields.items():
            if v is not None:
                sets.append(f)
                sets.append(v)
        if sets:
            commands.append(("HSET", full, *sets))
    if changes.positions:
        flat: list[str] = []
        for p, o in changes.positions.items():
            flat.append(str(p))
            flat.append(str(o))
        commands.append(("HSET", store.key(generation, keys.APPLIED), *flat))
    commands.append(("PUBLISH", store.changes_channel, _change_message(generation, changes)))
    return commands


async def _unwatch(conn: Any) -> None:
    await conn.send_command("UNWATCH")
    await conn.read_response()


def _change_message(generation: int, changes: Changes) -> str:
    routing = sorted(k for k in changes.fields
                     if k.startswith(("routes:", "versions:")) or k == keys.HOSTS)
    return json.dumps({
        "generation": generation,
        "positions": {str(p): o for p, o in changes.positions.items()},
        "keys": routing[:200],
        "truncated": len(routing) > 200,
    }, separators=(",", ":"))
