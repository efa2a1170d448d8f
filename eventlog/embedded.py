"""EmbeddedEventLog: the event log in one SQLite file, for a single machine.

Same placement and offsets as Kafka: partition = partition_for(key), offsets
per partition from 0. Appends from concurrent tasks are group-committed in
one transaction (one fsync for many events). Offsets are allocated inside
`BEGIN IMMEDIATE` transactions, so several processes may append to one file.
Tails are woken by local commits and poll for commits of other processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from eventlog.codec import DEFAULT_CODEC, Codec
from eventlog.errors import LogUnavailable, PartitionCountMismatch
from eventlog.port import (
    DEFAULT_BATCH,
    DEFAULT_MAX_EVENT_BYTES,
    EventLog,
    Position,
    Positions,
    PreparedEvent,
    Record,
)
from eventlog.private_files import private_sqlite

DEFAULT_PARTITIONS = 16
FORMAT_VERSION = "1"
_T = TypeVar("_T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS heads (
    partition INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (partition, "offset")
) WITHOUT ROWID;
"""


@dataclass
class _PendingWrite:
    events: Sequence[PreparedEvent]
    done: asyncio.Future[list[Position]]


class _SqliteThread:
    """One connection confined to one thread, so sqlite3 is never shared."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.conn: sqlite3.Connection | None = None

    async def run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self.conn
        if conn is None:
            raise LogUnavailable("sqlite connection is closed")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn)

    async def open(self, path: Path, busy_timeout_ms: int) -> None:
        def connect() -> sqlite3.Connection:
            # The control log (admin tokens are events): the platform's user only.
            private_sqlite(path)
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            conn.execute("PRAGMA journal_mode = WAL")
            # FULL: an acknowledged append survives power loss, not only a crash.
            conn.execute("PRAGMA synchronous = FULL")
            return conn

        loop = asyncio.get_running_loop()
        self.conn = await loop.run_in_executor(self._executor, connect)

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)


class EmbeddedEventLog(EventLog):
    def __init__(
        self,
        path: str | Path,
        *,
        partitions: int | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        poll_interval_s: float = 0.05,
        busy_timeout_ms: int = 10_000,
        codec: Codec = DEFAULT_CODEC,
    ) -> None:
        super().__init__(max_event_bytes=max_event_bytes, codec=codec)
        if partitions is not None and partitions <= 0:
            raise ValueError("partitions must be positive")
        self.path = Path(path)
        self._configured_partitions = partitions
        self._partitions: int | None = None
        self._poll_interval_s = poll_interval_s
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: _SqliteThread | None = None
        self._reader: _SqliteThread | None = None
        self._queue: asyncio.Queue[_PendingWrite] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._appended = asyncio.Event()

    @property
    def partitions(self) -> int:
        if self._partitions is None:
            raise self.not_started("EmbeddedEventLog")
        return self._partitions

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if self._partitions is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        writer, reader = _SqliteThread("eventlog-w"), _SqliteThread("eventlog-r")
        try:
            await writer.open(self.path, self._busy_timeout_ms)
            partitions = await writer.run(self._init_schema)
            await reader.open(self.path, self._busy_timeout_ms)
        except sqlite3.Error as exc:
            await writer.close()
            await reader.close()
            raise LogUnavailable(f"cannot open event log {self.path}: {exc}") from exc
        except BaseException:
            await writer.close()
            await reader.close()
            raise
        self._writer, self._reader = writer, reader
        self._partitions = partitions
        self._appended = asyncio.Event()
        self._queue = asyncio.Queue()
        self._flusher = asyncio.create_task(self._flush_loop(), name="eventlog-flush")

    def _init_schema(self, conn: sqlite3.Connection) -> int:
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in filter(str.strip, _SCHEMA.split(";")):
                conn.execute(statement)
            row = conn.execute("SELECT value FROM meta WHERE key = 'partitions'").fetchone()
            if row is None:
                partitions = self._configured_partitions or DEFAULT_PARTITIONS
                conn.executemany(
                    "INSERT INTO meta (key, value) VALUES (?, ?)",
                    [("partitions", str(partitions)), ("format", FORMAT_VERSION)],
                )
                conn.executemany(
                    "INSERT INTO heads (partition, next_offset) VALUES (?, 0)",
                    [(p,) for p in range(partitions)],
                )
            else:
                partitions = int(row[0])
                configured = self._configured_partitions
                if configured is not None and configured != partitions:
                    raise PartitionCountMismatch(partitions, configured)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return partitions

    async def stop(self) -> None:
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        queue, self._queue = self._queue, None
        while queue is not None and not queue.empty():
            pending = queue.get_nowait()
            if not pending.done.done():
                pending.done.set_exception(LogUnavailable("event log stopped before the write"))
        for thread in (self._writer, self._reader):
            if thread is not None:
                await thread.close()
        self._writer = self._reader = None
        self._partitions = None
        self._appended.set()  # wake tails so they notice the log is closed

    # --- writing ----------------------------------------------------------

    async def write_prepared(self, events: Sequence[PreparedEvent]) -> list[Position]:
        queue = self._queue
        if queue is None:
            raise self.not_started("EmbeddedEventLog")
        done: asyncio.Future[list[Position]] = asyncio.get_running_loop().create_future()
        # A caller cancelled mid-commit never reads the outcome; consume it here.
        done.add_done_callback(lambda f: f.cancelled() or f.exception())
        queue.put_nowait(_PendingWrite(events, done))
        # Shielded: a cancelled caller must not cancel a commit other callers share.
        return await asyncio.shield(done)

    async def _flush_loop(self) -> None:
        queue, writer = self._queue, self._writer
        assert queue is not None and writer is not None
        while True:
            batch = [await queue.get()]
            while not queue.empty() and len(batch) < 10_000:
                batch.append(queue.get_nowait())
            events = [e for pending in batch for e in pending.events]
            try:
                positions = await writer.run(functools.partial(_commit, events=events))
            except Exception as exc:  # every waiter must hear about the failure
                error = LogUnavailable(f"append to {self.path} failed: {exc!r}")
                for pending in batch:
                    if not pending.done.done():
                        pending.done.set_exception(error)
                continue
            i = 0
            for pending in batch:
                n = len(pending.events)
                if not pending.done.done():
                    pending.done.set_result(positions[i : i + n])
                i += n
            woken, self._appended = self._appended, asyncio.Event()
            woken.set()

    # --- reading ----------------------------------------------------------

    async def end_positions(self) -> dict[int, int]:
        reader = self._reader
        if reader is None:
            raise self.not_started("EmbeddedEventLog")
        return await reader.run(_heads)

    async def read_batches(
        self,
        start: Positions | None = None,
        *,
        until: Positions | None = None,
        max_batch: int = DEFAULT_BATCH,
    ) -> AsyncGenerator[list[Record], None]:
        positions = self.resolve_start(start)
        ends = await self.resolve_until(positions, until)
        while positions:
            batch = await self._fetch(positions, ends, max_batch)
            if not batch:
                return
            yield batch

    async def tail_batches(
        self, start: Positions | None = None, *, max_batch: int = DEFAULT_BATCH
    ) -> AsyncGenerator[list[Record], None]:
        positions = dict(await self.end_positions()) if start is None else self.resolve_start(start)
        while True:
            woken = self._appended
            batch = await self._fetch(positions, None, max_batch)
            if batch:
                yield batch
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), self._poll_interval_s)

    async def _fetch(
        self, positions: dict[int, int], ends: dict[int, int] | None, max_batch: int
    ) -> list[Record]:
        """Next records from `positions` (advanced in place), partitions round-robin."""
        reader = self._reader
        if reader is None:
            raise self.not_started("EmbeddedEventLog")
        if ends is not None:
            for p in [p for p, off in positions.items() if off >= ends[p]]:
                del positions[p]
        if not positions:
            return []
        per_partition = max(1, max_batch // len(positions))
        query = dict(positions)
        rows = await reader.run(lambda conn: _select(conn, query, ends, per_partition))
        records: list[Record] = []
        for partition, offset, timestamp_ms, value in rows:
            records.append(self.make_record(partition, offset, value, timestamp_ms))
            positions[partition] = offset + 1
        return records


def _commit(conn: sqlite3.Connection, events: Sequence[PreparedEvent]) -> list[Position]:
    now = time.time_ns() // 1_000_000
    conn.execute("BEGIN IMMEDIATE")
    try:
        heads = dict(conn.execute("SELECT partition, next_offset FROM heads").fetchall())
        positions: list[Position] = []
        rows: list[tuple[int, int, int, str, bytes]] = []
        for event in events:
            offset = heads[event.partition]
            heads[event.partition] = offset + 1
            positions.append(Position(event.partition, offset))
            rows.append((event.partition, offset, now, event.key, event.raw))
        conn.executemany(
            'INSERT INTO events (partition, "offset", timestamp_ms, key, value) '
            "VALUES (?, ?, ?, ?, ?)",
            rows,
        )
        touched = {e.partition for e in events}
        conn.executemany(
            "UPDATE heads SET next_offset = ? WHERE partition = ?",
            [(heads[p], p) for p in touched],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return positions


def _heads(conn: sqlite3.Connection) -> dict[int, int]:
    return dict(conn.execute("SELECT partition, next_offset FROM heads ORDER BY partition"))


def _select(
    conn: sqlite3.Connection,
    positions: dict[int, int],
    ends: dict[int, int] | None,
    limit: int,
) -> list[tuple[int, int, int, bytes]]:
    rows: list[tuple[int, int, int, bytes]] = []
    # One snapshot for all partitions so a batch never mixes two commits' views.
    conn.execute("BEGIN")
    try:
        for partition, offset in positions.items():
            end = ends[partition] if ends is not None else 1 << 62
            rows.extend(
                conn.execute(
                    'SELECT partition, "offset", timestamp_ms, value FROM events '
                    'WHERE partition = ? AND "offset" >= ? AND "offset" < ? '
                    'ORDER BY "offset" LIMIT ?',
                    (partition, offset, end, limit),
                )
            )
    finally:
        conn.execute("COMMIT")
    return rows
