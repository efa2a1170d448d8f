"""KV on SQLite (the embedded default): one table, WAL, one connection.

Keys are stored as UTF-8 BLOBs so ORDER BY and range scans compare bytes, the
order Workers KV lists in. One aiosqlite connection serialises every statement,
which is what gives read-your-writes without further locking. Expired rows are
filtered by every read and deleted in batches now and then by puts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import aiosqlite

from eventlog.private_files import private_sqlite
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

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (
    ns TEXT NOT NULL,
    res TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    metadata TEXT,
    expiration INTEGER,
    PRIMARY KEY (ns, res, key)
);
CREATE INDEX IF NOT EXISTS kv_expiration ON kv (expiration) WHERE expiration IS NOT NULL;
"""
_LIVE = "(expiration IS NULL OR expiration > ?)"
_SWEEP_EVERY = 1000  # puts between two deletions of expired rows


class SqliteKvStore(KvStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db: aiosqlite.Connection | None = None
        self._puts = 0

    async def start(self) -> None:
        private_sqlite(self.path)  # every tenant's KV values: the platform's user only
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")
        await self._db.executescript(_SCHEMA)

    async def stop(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("SqliteKvStore is not started")
        return self._db

    async def get(self, namespace: str, resource: str, key: str) -> KvEntry | None:
        async with self.db.execute(
                f"SELECT value, metadata, expiration FROM kv WHERE ns = ? AND res = ? AND key = ?"
                f" AND {_LIVE}", (namespace, resource, key.encode(), now_s())) as cur:
            row = await cur.fetchone()
        return None if row is None else KvEntry(bytes(row[0]), row[1], row[2])

    async def get_many(self, namespace: str, resource: str,
                       keys: Sequence[str]) -> list[KvEntry | None]:
        if not keys:
            return []
        wanted = [k.encode() for k in keys]
        marks = ",".join("?" * len(wanted))
        async with self.db.execute(
                f"SELECT key, value, metadata, expiration FROM kv WHERE ns = ? AND res = ?"
                f" AND key IN ({marks}) AND {_LIVE}",
                (namespace, resource, *wanted, now_s())) as cur:
            found = {bytes(r[0]): KvEntry(bytes(r[1]), r[2], r[3]) for r in await cur.fetchall()}
        return [found.get(k) for k in wanted]

    async def put(self, namespace: str, resource: str, key: str, value: bytes, *,
                  expiration: int | None = None, metadata: str | None = None) -> None:
        await self.db.execute(
            "INSERT OR REPLACE INTO kv (ns, res, key, value, metadata, expiration)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (namespace, resource, key.encode(), value, metadata, expiration))
        self._puts += 1
        if self._puts % _SWEEP_EVERY == 0:
            await self.db.execute("DELETE FROM kv WHERE expiration <= ?", (now_s(),))

    async def delete(self, namespace: str, resource: str, key: str) -> None:
        await self.db.execute("DELETE FROM kv WHERE ns = ? AND res = ? AND key = ?",
                              (namespace, resource, key.encode()))

    async def list(self, namespace: str, resource: str, *, prefix: str = "",
                   limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> KvPage:
        low = prefix.encode()
        sql = ("SELECT key, expiration, metadata FROM kv WHERE ns = ? AND res = ?"
               f" AND {_LIVE} AND key >= ?")
        args: list[object] = [namespace, resource, now_s(), low]
        if cursor:
            sql += " AND key > ?"
            args.append(decode_cursor(cursor).encode())
        if prefix:
            sql += " AND key < ?"
            args.append(prefix_upper_bound(low))
        sql += " ORDER BY key LIMIT ?"
        args.append(limit + 1)
        async with self.db.execute(sql, args) as cur:
            rows = list(await cur.fetchall())
        more = len(rows) > limit
        keys = [KvKey(bytes(r[0]).decode(), r[1], r[2]) for r in rows[:limit]]
        return KvPage(keys, not more, encode_cursor(keys[-1].name) if more else None)

    async def purge(self, namespace: str, resource: str) -> int:
        async with self.db.execute("DELETE FROM kv WHERE ns = ? AND res = ?",
                                   (namespace, resource)) as cur:
            return cur.rowcount
