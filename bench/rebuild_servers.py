"""The servers' floor of `bench rebuild`: the CPU the servers alone spend on a rebuild's writes.

After the rebuild, its own output is loaded again in the cheapest way each
server offers, with no fold and (almost) no client work:

- PostgreSQL: every shadow audit table is copied out in COPY text format,
  then loaded into empty copies of the tables in one transaction with one
  COPY each (the client only sends those bytes), and the shadow's indexes
  (unique and deferred alike) are built afterwards with the rebuild's
  `maintenance_work_mem`. Parallel maintenance workers are off so the whole
  cost is the one backend's, read from /proc/<pid>/stat.
- Redis: the rebuilt generation's final state (less than the rebuild wrote:
  it also writes intermediate states) as pipelined HSET/SADD/SET commands over
  one socket; Redis's own CPU from INFO.
- Kafka: the broker's CPU while the bare consume baseline read the topic (a
  pid file from the harness; absent in other setups).

Each part is a lower bound of what any rebuild of this history must make the
servers do, so `events / (servers_cpu_s / cores)` bounds how fast any client,
in any language, could rebuild it on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import psycopg
import redis.asyncio as aioredis

_TICK = os.sysconf("SC_CLK_TCK")
_CHUNK = 1 << 20


def process_cpu_s(pid: int) -> float | None:
    """User + system CPU seconds of a local process, None when it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICK


def kafka_broker_pid() -> int | None:
    state = os.environ.get("WDL_HARNESS_STATE")
    if not state:
        return None
    try:
        return int((Path(state) / "kafka.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


async def redis_cpu_s(client: Any) -> float:
    info = await client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


async def postgres_floor(url: str, schema: str) -> dict[str, Any]:
    """Copy `schema`'s tables out, then time loading and indexing them in a fresh schema."""
    # Spooled on disk, not held in memory: a 1M-event audit is ~1 GB of text.
    with contextlib.ExitStack() as files:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            return await _postgres_floor(conn, schema, files)


async def _postgres_floor(conn: psycopg.AsyncConnection[Any], schema: str,
                          files: contextlib.ExitStack) -> dict[str, Any]:
    tables = [r[0] for r in await (await conn.execute(
        "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY tablename",
        (schema,))).fetchall()]
    indexes = [r[0] for r in await (await conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY indexname",
        (schema,))).fetchall()]
    # Closed by `files`, the caller's ExitStack.
    spools = {t: files.enter_context(tempfile.TemporaryFile()) for t in tables}  # noqa: SIM115
    rows = size = 0
    for table in tables:
        async with conn.cursor().copy(f'COPY "{schema}"."{table}" TO STDOUT') as copy:
            async for data in copy:
                spools[table].write(data)
                rows += bytes(data).count(b"\n")
                size += len(data)
    floor = f"{schema}_floor"
    await conn.execute(f'DROP SCHEMA IF EXISTS "{floor}" CASCADE')
    await conn.execute(f'CREATE SCHEMA "{floor}"')
    for table in tables:
        await conn.execute(f'CREATE TABLE "{floor}"."{table}" '
                           f'(LIKE "{schema}"."{table}" INCLUDING DEFAULTS)')
    await conn.execute("SET max_parallel_maintenance_workers = 0")
    # As the rebuild's own index builds (AuditStore.restore_indexes): sorts in memory.
    await conn.execute("SET maintenance_work_mem = '256MB'")
    pid = int((await (await conn.execute("SELECT pg_backend_pid()")).fetchone() or (0,))[0])
    before = process_cpu_s(pid)
    started = time.perf_counter()
    async with conn.transaction():
        for table in tables:
            async with conn.cursor().copy(f'COPY "{floor}"."{table}" FROM STDIN') as copy:
                source = spools[table]
                source.seek(0)
                while chunk := source.read(_CHUNK):
                    await copy.write(chunk)
    copy_wall = time.perf_counter() - started
    mid = process_cpu_s(pid)
    started = time.perf_counter()
    for n, ddl in enumerate(indexes):
        # Same definition on the copy, under a name of its own.
        head, _, rest = ddl.partition(" ON ")
        words = head.split()
        words[-1] = f'"floor_{n}"'
        await conn.execute(" ".join(words) + " ON "
                           + rest.replace(f"{schema}.", f'"{floor}".', 1))
    index_wall = time.perf_counter() - started
    after = process_cpu_s(pid)
    await conn.execute(f'DROP SCHEMA "{floor}" CASCADE')
    copy_cpu = index_cpu = None
    if before is not None and mid is not None and after is not None:
        copy_cpu, index_cpu = mid - before, after - mid
    return {"rows": rows, "bytes": size, "indexes": len(indexes),
            "copy_wall_s": copy_wall, "index_wall_s": index_wall,
            "copy_cpu_s": copy_cpu, "index_cpu_s": index_cpu}


def _resp(args: Iterable[bytes]) -> bytes:
    parts = list(args)
    out = [b"*%d\r\n" % len(parts)]
    for a in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


async def _commands(client: Any, pattern: str, old: bytes, new: bytes,
                    ) -> AsyncIterator[bytes]:
    async for key in client.scan_iter(match=pattern, count=5000):
        kind = await client.type(key)
        target = key.replace(old, new, 1)
        if kind == b"hash":
            items = list((await client.hgetall(key)).items())
            for i in range(0, len(items), 500):
                yield _resp([b"HSET", target, *(x for kv in items[i:i + 500] for x in kv)])
        elif kind == b"set":
            yield _resp([b"SADD", target, *await client.smembers(key)])
        elif kind == b"string":
            yield _resp([b"SET", target, await client.get(key)])
        elif kind == b"zset":
            pairs = await client.zrange(key, 0, -1, withscores=True)
            yield _resp([b"ZADD", target,
                         *(x for m, s in pairs for x in (repr(s).encode(), m))])


async def redis_floor(url: str, prefix: str, generation: int) -> dict[str, Any]:
    """Replay generation `generation`'s final state under another prefix over one socket."""
    client = aioredis.Redis.from_url(url)
    old = f"{prefix}g{generation}:".encode()
    new = f"{prefix}floor:".encode()
    try:
        commands = size = 0
        with tempfile.TemporaryFile() as spool:
            async for command in _commands(client, f"{prefix}g{generation}:*", old, new):
                spool.write(command)
                commands += 1
                size += len(command)
            spool.seek(0)
            kwargs = client.connection_pool.connection_kwargs
            reader, writer = await asyncio.open_connection(kwargs.get("host", "127.0.0.1"),
                                                           kwargs.get("port", 6379))
            try:
                if kwargs.get("db"):
                    writer.write(_resp([b"SELECT", str(kwargs["db"]).encode()]))
                    await reader.readline()
                before = await redis_cpu_s(client)
                started = time.perf_counter()

                async def send() -> None:
                    while chunk := spool.read(_CHUNK):
                        writer.write(chunk)
                        await writer.drain()

                sending = asyncio.ensure_future(send())
                for _ in range(commands):
                    line = await reader.readline()
                    if line.startswith(b"-"):
                        raise RuntimeError(f"redis refused a floor command: {line!r}")
                await sending
                wall = time.perf_counter() - started
                cpu = await redis_cpu_s(client) - before
            finally:
                writer.close()
        keys = [k async for k in client.scan_iter(match=f"{prefix}floor:*", count=5000)]
        for i in range(0, len(keys), 5000):
            await client.unlink(*keys[i:i + 5000])
    finally:
        await client.aclose()
    return {"commands": commands, "bytes": size, "wall_s": wall, "cpu_s": cpu}


def bound(events: int, parts: dict[str, float | None], cores: int) -> dict[str, Any]:
    known = {k: round(v, 3) for k, v in parts.items() if v is not None}
    total = sum(known.values())
    return {"servers_cpu_s": round(total, 2), "servers_cpu_us_per_event":
            round(total / events * 1e6, 1) if events else None,
            "servers_floor_events_per_s": round(events / (total / cores)) if total else None,
            "servers_cpu_parts_s": known}
