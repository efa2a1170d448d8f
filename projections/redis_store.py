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
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from projections import keys
from projections.changes import Changes
from projections.store import GenerationMissing, ProjectionStore, StalePosition, VerdictWatch

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

# A live batch in one round trip (instead of WATCH + checks, then MULTI ... EXEC):
# the checks and the writes run as one atomic step, like a transaction whose
# watched keys cannot change. KEYS: applied hash, generation registry, current
# pointer, changes channel. ARGV: generation; n, then n (partition, expected)
# pairs; m, then m commands, each its argument count and arguments; the change
# notification without its closing brace, which gets the current generation as of
# this step (a reader trusts a verdict it carries only from the current generation).
_APPLY = """
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 0 then return 'missing' end
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local at = tonumber(redis.call('HGET', KEYS[1], ARGV[i]) or '0')
  if at ~= tonumber(ARGV[i + 1]) then return 'stale:' .. ARGV[i] .. ':' .. at end
  i = i + 2
end
local m = tonumber(ARGV[i])
i = i + 1
for _ = 1, m do
  local argc = tonumber(ARGV[i])
  redis.call(unpack(ARGV, i + 1, i + argc))
  i = i + argc + 1
end
local current = redis.call('GET', KEYS[3]) or 'null'
redis.call('PUBLISH', KEYS[4], ARGV[i] .. ',"current":' .. current .. '}')
return 'ok'
"""

# The notification of a large batch, inside its MULTI ... EXEC. KEYS: current
# pointer, changes channel; ARGV: the notification without its closing brace.
_PUBLISH = """
local current = redis.call('GET', KEYS[1]) or 'null'
return redis.call('PUBLISH', KEYS[2], ARGV[1] .. ',"current":' .. current .. '}')
"""

# Batches up to these sizes go through _APPLY (Lua's unpack() bounds a command's
# arguments; a rebuild's batches stay on the pipelined transaction, packed in C).
_SCRIPT_MAX_COMMANDS = 64
_SCRIPT_MAX_ARGUMENTS = 2000
# Verdicts a notification carries at most (more: readers read them).
NOTICE_MAX_VERDICTS = 64
_VERDICTS_PREFIX = keys.verdicts(0).rpartition(":")[0] + ":"
_decode_notice = msgspec.json.Decoder()

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
        self._watches: set[VerdictWatch] = set()
        self._live = False  # the listener is subscribed to the changes channel
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
            "apply": self._client.register_script(_APPLY),
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
        notice = _change_message(generation, changes)
        arguments = sum(len(c) for c in commands)
        if len(commands) <= _SCRIPT_MAX_COMMANDS and arguments <= _SCRIPT_MAX_ARGUMENTS:
            await self._apply_script(generation, commands, arguments, notice, expected,
                                     changes)
            return
        commands.append(("EVAL", _PUBLISH, 2, self._current_key, self.changes_channel,
                         notice))
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

    async def _apply_script(self, generation: int, commands: list[tuple[str | int, ...]],
                            arguments: int, notice: str, expected: Mapping[int, int],
                            changes: Changes) -> None:
        args: list[str | int] = [generation, len(changes.positions)]
        for partition in changes.positions:
            args.extend((partition, expected.get(partition, 0)))
        args.append(len(commands))
        for cmd in commands:
            args.append(len(cmd))
            args.extend(cmd)
        args.append(notice)
        try:
            outcome = await self._scripts["apply"](
                keys=[self.key(generation, keys.APPLIED), self._registry_key,
                      self._current_key, self.changes_channel], args=args)
        except ResponseError as exc:
            raise RuntimeError(f"Redis refused part of a batch: {exc}") from exc
        if outcome == "missing":
            raise GenerationMissing(f"generation {generation} was dropped")
        if outcome != "ok":
            _, stale, at = str(outcome).split(":")
            raise StalePosition(f"partition {stale} is at {at}, writer expected "
                                f"{expected.get(int(stale), 0)}")
        written = self.written
        written["transactions"] += 1
        written["commands"] += len(commands)
        written["arguments"] += arguments - len(commands)
        written["bytes"] += sum(len(str(a)) for a in args)

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
        self._ensure_listener()
        changed = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(changed.wait(), timeout)

    def watch_verdict(self, event_id: str, partition: int) -> VerdictWatch:
        self._ensure_listener()
        watch = VerdictWatch(event_id, partition, live=self._live)
        self._watches.add(watch)
        return watch

    def unwatch_verdict(self, watch: VerdictWatch) -> None:
        self._watches.discard(watch)

    def _ensure_listener(self) -> None:
        old = self._listener
        if old is None or old.done():
            if old is not None and not old.cancelled():
                old.exception()  # retrieved: a lost connection is retried here, not raised
            self._listener = asyncio.create_task(self._listen())

    async def _listen(self) -> None:
        # Wake-ups, and the verdicts of watched events; callers still read after a
        # timeout, so a missed message costs at most that, never correctness.
        pubsub = self.client.pubsub()
        try:
            await pubsub.subscribe(self.changes_channel)
            async for message in pubsub.listen():
                kind = message.get("type")
                if kind == "message":
                    self._changed.set()
                    self._changed = asyncio.Event()
                    if self._watches:
                        self._dispatch(message.get("data"))
                elif kind == "subscribe":
                    self._live = True
        finally:
            self._live = False
            for watch in self._watches:
                watch.notify()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def _dispatch(self, data: Any) -> None:
        try:
            notice = _decode_notice.decode(data)
            positions = notice.get("positions") or {}
            current = notice.get("current")
        except (msgspec.DecodeError, AttributeError, TypeError):
            notice, positions, current = None, None, None
        if not isinstance(notice, dict) or not isinstance(positions, dict) \
                or notice.get("switched"):
            for watch in self._watches:  # unknown or a switch: everyone reads
                watch.notify()
            return
        generation = notice.get("generation")
        if current is not None and generation != current:
            return  # a generation readers do not read (a rebuild's)
        verdicts = notice.get("verdicts") if current is not None else None
        for watch in self._watches:
            raw = verdicts.get(watch.event_id) if isinstance(verdicts, dict) else None
            if isinstance(raw, str):
                watch.notify(raw)
                continue
            applied = positions.get(str(watch.partition))
            if isinstance(applied, int) and watch.moved(applied):
                watch.notify()


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
    return commands


async def _unwatch(conn: Any) -> None:
    await conn.send_command("UNWATCH")
    await conn.read_response()


def _change_message(generation: int, changes: Changes) -> str:
    """The notification without its closing brace: the store appends `current`.

    A batch of up to NOTICE_MAX_VERDICTS verdicts carries them (event id → the
    verdict document), so a command's waiter needs no read after its wake-up."""
    routing = sorted(k for k in changes.fields
                     if k.startswith(("routes:", "versions:")) or k == keys.HOSTS)
    doc: dict[str, Any] = {
        "generation": generation,
        "positions": {str(p): o for p, o in changes.positions.items()},
        "keys": routing[:200],
        "truncated": len(routing) > 200,
    }
    verdicts: dict[str, str] = {}
    for name, fields in changes.fields.items():
        if name.startswith(_VERDICTS_PREFIX):
            verdicts.update((f, v) for f, v in fields.items() if v is not None)
            if len(verdicts) > NOTICE_MAX_VERDICTS:
                verdicts = {}
                break
    if verdicts:
        doc["verdicts"] = verdicts
    return json.dumps(doc, separators=(",", ":"))[:-1]
