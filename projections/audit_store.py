"""The audit projection: append-only tables of every event and its verdict.

Each batch is one database transaction holding the rows *and* the new applied
positions, after a compare-and-set on the stored positions (row locks on
PostgreSQL, the database write lock on SQLite), so a crash or a stale
replica can neither lose rows nor write a position twice. PostgreSQL takes
bulk rows through COPY, which is what lets a rebuild keep up with the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import operator
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import msgspec
from alembic import command
from alembic.config import Config
from sqlalchemy import (
    Boolean,
    Connection,
    Integer,
    LargeBinary,
    Table,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from projections.audit_db import drop_generation_storage, make_async_engine
from projections.audit_models import (
    AUDIT_SCHEMA,
    AppliedPosition,
    AuditEvent,
    AuditGeneration,
    CurrentGeneration,
    DeadLetter,
    Deployment,
    LeaseHistory,
    generation_schema,
)
from projections.changes import Changes
from projections.store import GenerationMissing, StalePosition

_json = msgspec.json.Encoder(order="sorted")
ROOT = Path(__file__).resolve().parent.parent

try:  # psycopg's C implementation, when installed (psycopg[binary] / psycopg[c])
    from psycopg._cmodule import _psycopg as _psycopg_c

    _format_row_text: Any = getattr(_psycopg_c, "format_row_text", None)
except ImportError:  # pragma: no cover - the pure-Python psycopg
    _format_row_text = None
_COPY_BUFFER = 1 << 20

ROW_TABLES: tuple[tuple[str, Table], ...] = tuple(
    (name, model.__table__)  # type: ignore[misc]
    for name, model in (("audit", AuditEvent), ("deployments", Deployment),
                        ("lease_history", LeaseHistory), ("dead_letters", DeadLetter))
)


def alembic_config() -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    return cfg


def run_migrations(connection: Connection, *, schemas: Sequence[str] | None = None,
                   revision: str = "head", downgrade: bool = False) -> None:
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    if schemas is not None:
        cfg.attributes["schemas"] = list(schemas)
    cfg.attributes["downgrading"] = downgrade
    if downgrade:
        command.downgrade(cfg, revision)
    else:
        command.upgrade(cfg, revision)


class AuditStore:
    def __init__(self, url: str, *, migrate: bool = True) -> None:
        """`migrate=False` skips `alembic upgrade` at start (the parallel rebuild's workers,
        whose parent has already migrated the database)."""
        self.url = url
        self.migrate = migrate
        self._engine: AsyncEngine | None = None
        self.written_rows = 0  # rows `apply` has committed (benchmarks compare against it)

    async def start(self) -> None:
        self._engine = make_async_engine(self.url)
        if self.migrate:
            async with self._engine.begin() as conn:
                await conn.run_sync(lambda c: run_migrations(c))

    async def stop(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("AuditStore is not started")
        return self._engine

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextlib.asynccontextmanager
    async def connect(self, generation: int) -> AsyncIterator[AsyncConnection]:
        """A connection whose `audit` schema is the given generation."""
        async with self.engine.connect() as conn:
            await conn.execution_options(
                schema_translate_map={AUDIT_SCHEMA: generation_schema(generation)})
            yield conn

    # --- generations ------------------------------------------------------

    async def current_generation(self) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(select(CurrentGeneration.generation).where(
                CurrentGeneration.id == 1))
        if value is None:
            raise GenerationMissing("no current audit generation; run the migrations")
        return int(value)

    async def generations(self) -> list[int]:
        async with self.engine.connect() as conn:
            rows = await conn.scalars(select(AuditGeneration.generation))
            return sorted(int(r) for r in rows)

    async def new_generation(self) -> int:
        async with self.engine.begin() as conn:
            top = await conn.scalar(select(func.max(AuditGeneration.generation)))
            gen = int(top or 0) + 1
            await conn.execute(insert(AuditGeneration).values(
                generation=gen, created_at_ms=int(time.time() * 1000), state="building"))
            schema = generation_schema(gen)
            await conn.run_sync(lambda c: run_migrations(c, schemas=[schema]))
        return gen

    async def switch(self, generation: int, *, not_behind: int | None = None) -> bool:
        async with self.engine.begin() as conn:
            # Lock the pointer row so concurrent switches serialise.
            stmt = select(CurrentGeneration.generation).where(CurrentGeneration.id == 1)
            if self.is_postgres:
                stmt = stmt.with_for_update()
            await conn.scalar(stmt)
            if not_behind is not None:
                mine = await self._applied(conn, generation)
                theirs = await self._applied(conn, not_behind)
                if any(mine.get(p, 0) < o for p, o in theirs.items()):
                    return False
            await conn.execute(update(CurrentGeneration).where(CurrentGeneration.id == 1)
                               .values(generation=generation))
            await conn.execute(update(AuditGeneration)
                               .where(AuditGeneration.generation == generation)
                               .values(state="live"))
        return True

    async def defer_indexes(self, generation: int) -> list[str]:
        """Drop a shadow generation's secondary indexes for a bulk load; returns their DDL.

        Maintaining seven B-trees per audit row costs PostgreSQL about twice
        the COPY itself; building them once after the load is several times
        cheaper. Unique indexes stay, so no position can be written twice
        meanwhile. Give the result to `restore_indexes` before readers use
        the generation (a rebuild does so before it verifies and switches).
        """
        if not self.is_postgres:
            return []
        schema = generation_schema(generation)
        async with self.engine.begin() as conn:
            rows = (await conn.execute(text(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = :s "
                "AND indexdef NOT LIKE 'CREATE UNIQUE INDEX%' ORDER BY indexname"),
                {"s": schema})).all()
            for name, _ in rows:
                await conn.execute(text(f'DROP INDEX "{schema}"."{name}"'))
        return [str(ddl) for _, ddl in rows]

    async def restore_indexes(self, generation: int, ddl: Sequence[str], *,
                              concurrency: int = 2) -> None:
        """Recreate what `defer_indexes` dropped, on `concurrency` connections at once.

        This runs after the whole load, so a rebuild waits for it: separate
        backends build separate indexes in parallel, each with room to sort
        in memory. A failure leaves the (never switched) shadow incomplete.
        """
        if not ddl:
            return
        pending = list(ddl)

        async def build() -> None:
            async with self.engine.begin() as conn:
                await conn.execute(text("SET LOCAL maintenance_work_mem = '256MB'"))
                while pending:
                    await conn.execute(text(pending.pop(0)))

        await asyncio.gather(*(build() for _ in range(max(1, min(concurrency, len(ddl))))))

    async def drop_generation(self, generation: int) -> None:
        if generation == await self.current_generation():
            raise ValueError("cannot drop the current generation")
        async with self.engine.begin() as conn:
            await conn.execute(delete(AuditGeneration)
                               .where(AuditGeneration.generation == generation))
            schema = generation_schema(generation)
            await conn.run_sync(lambda c: drop_generation_storage(c, schema))

    # --- positions and writes ---------------------------------------------

    async def _applied(self, conn: AsyncConnection, generation: int,
                       *, lock: bool = False,
                       partitions: Iterable[int] | None = None) -> dict[int, int]:
        schema = generation_schema(generation)
        tname = f'"{schema}".applied_positions' if self.is_postgres else \
            f"{schema}.applied_positions"
        sql = f"SELECT log_partition, next_offset FROM {tname}"
        if partitions is not None:
            # Lock only the partitions being written, so writers of other
            # partitions (parallel rebuild workers) need not wait for us.
            sql += " WHERE log_partition IN (" + ", ".join(
                str(int(p)) for p in sorted(partitions)) + ")"
        if lock and self.is_postgres:
            sql += " FOR UPDATE"
        rows = (await conn.execute(text(sql))).all()
        return {int(p): int(o) for p, o in rows}

    async def applied(self, generation: int) -> dict[int, int]:
        async with self.engine.connect() as conn:
            return await self._applied(conn, generation)

    async def apply(self, generation: int, changes: Changes,
                    expected: Mapping[int, int]) -> None:
        if not changes.positions:
            return
        async with self.engine.connect() as conn:
            await conn.execution_options(
                schema_translate_map={AUDIT_SCHEMA: generation_schema(generation)})
            if not self.is_postgres:
                # Take SQLite's write lock first so the CAS read and the write are atomic.
                await conn.exec_driver_sql("BEGIN IMMEDIATE")
            else:
                await conn.begin()
            try:
                registered = await conn.scalar(select(AuditGeneration.generation).where(
                    AuditGeneration.generation == generation))
                if registered is None:
                    raise GenerationMissing(f"audit generation {generation} was dropped")
                stored = await self._applied(conn, generation, lock=True,
                                             partitions=changes.positions)
                for partition in changes.positions:
                    if stored.get(partition, 0) != expected.get(partition, 0):
                        raise StalePosition(
                            f"audit partition {partition} is at {stored.get(partition, 0)}, "
                            f"writer expected {expected.get(partition, 0)}")
                rows = _rows_after(changes, stored)
                if self.is_postgres:
                    await self._copy(conn, generation, rows)
                else:
                    for name, table in ROW_TABLES:
                        if rows[name]:
                            await conn.execute(insert(table), [_decoded(r) for r in rows[name]])
                await self._set_positions(conn, generation, changes.positions, stored)
                if self.is_postgres:
                    await conn.commit()
                else:
                    await conn.exec_driver_sql("COMMIT")
                self.written_rows += sum(len(r) for r in rows.values())
            except BaseException:
                if self.is_postgres:
                    await conn.rollback()
                else:
                    await conn.exec_driver_sql("ROLLBACK")
                raise

    async def _set_positions(self, conn: AsyncConnection, generation: int,
                             positions: Mapping[int, int], stored: Mapping[int, int]) -> None:
        table = AppliedPosition.__table__
        for partition, offset in positions.items():
            if partition in stored:
                await conn.execute(update(table)  # type: ignore[arg-type]
                                   .where(table.c.log_partition == partition)
                                   .values(next_offset=offset))
            else:
                await conn.execute(insert(table).values(  # type: ignore[arg-type]
                    log_partition=partition, next_offset=offset))

    async def _copy(self, conn: AsyncConnection, generation: int,
                    rows: Mapping[str, list[dict[str, Any]]]) -> None:
        raw = await conn.get_raw_connection()
        pg: Any = raw.driver_connection
        schema = generation_schema(generation)
        async with pg.cursor() as cur:
            for name, table in ROW_TABLES:
                batch = rows[name]
                if not batch:
                    continue
                columns = _COLUMNS[name]
                sql = (f'COPY "{schema}"."{table.name}" ('
                       + ", ".join(f'"{c}"' for c in columns) + ") FROM STDIN")
                pick = operator.itemgetter(*columns)  # rows carry every column
                async with cur.copy(sql) as copy:
                    # Format rows with the copy's own (C) formatter in a plain
                    # loop and await only when a buffer is full: one awaited
                    # write_row per row cost more than formatting the row.
                    if _format_row_text is not None:
                        # Straight into our buffer: write_row is a Python frame
                        # around this same C function, a few percent of a rebuild.
                        tx = copy.formatter.transformer
                        buf = bytearray()
                        for row in batch:
                            _format_row_text(pick(row), tx, buf)
                            if len(buf) > _COPY_BUFFER:
                                await copy.write(buf)
                                buf = bytearray()
                        if buf:
                            await copy.write(buf)
                        continue
                    format_row = copy.formatter.write_row
                    for row in batch:
                        data = format_row(pick(row))
                        if data:
                            await copy.write(data)

    # --- digests ----------------------------------------------------------

    async def digest(self, generation: int) -> str:
        """Content digest of every audit table of a generation (see AuditDigest)."""
        return (await self.snapshot_digest(generation))[1]

    async def snapshot_digest(self, generation: int) -> tuple[dict[int, int], str]:
        """The applied positions and the digest, read from one snapshot.

        On PostgreSQL the rows are streamed with COPY in binary (decoded by
        psycopg in C) inside a REPEATABLE READ transaction, so a live
        projector writing meanwhile cannot make positions and rows disagree;
        going through SQLAlchemy rows cost more than the fold being checked.
        """
        digest = AuditDigest()
        if not self.is_postgres:
            async with self.connect(generation) as conn:
                for name, table in ROW_TABLES:
                    columns = [c for c in table.columns if c.name != "id"]
                    result = await conn.stream(select(*columns).order_by(
                        table.c.log_partition, table.c.log_offset))
                    async for row in result:
                        digest.add(name, dict(zip([c.name for c in columns], row,
                                                  strict=True)))
                positions = await self._applied(conn, generation)
            digest.positions(positions)
            return positions, digest.hexdigest()
        schema = generation_schema(generation)
        async with self.engine.connect() as conn:
            await conn.execution_options(isolation_level="REPEATABLE READ")
            await conn.begin()
            try:
                # The first statement fixes the snapshot.
                positions = await self._applied(conn, generation)
                raw = await conn.get_raw_connection()
                pg: Any = raw.driver_connection
                async with pg.cursor() as cur:
                    for name, table in ROW_TABLES:
                        select_list, types = _copy_out_columns(table)
                        sql = (f"COPY (SELECT {select_list} FROM \"{schema}\".\"{table.name}\""
                               " ORDER BY log_partition, log_offset) TO STDOUT (FORMAT BINARY)")
                        add = digest.adder(name)
                        async with cur.copy(sql) as copy:
                            copy.set_types(types)
                            async for row in copy.rows():
                                add(row)
            finally:
                await conn.rollback()
        digest.positions(positions)
        return positions, digest.hexdigest()

    async def count_positions(self, generation: int) -> tuple[int, int]:
        """(rows, distinct positions) of audit_events: equal unless a position repeats."""
        async with self.connect(generation) as conn:
            table = AuditEvent.__table__
            total = await conn.scalar(select(func.count()).select_from(table))
            distinct = await conn.scalar(select(func.count()).select_from(
                select(table.c.log_partition, table.c.log_offset).distinct().subquery()))
        return int(total or 0), int(distinct or 0)


def _rows_after(changes: Changes, stored: Mapping[int, int]) -> dict[str, list[dict[str, Any]]]:
    """Rows of events at or past the stored position (a restart may refold a few)."""
    out: dict[str, list[dict[str, Any]]] = {}
    sources = {"audit": changes.audit, "deployments": changes.deployments,
               "lease_history": changes.lease_history, "dead_letters": changes.dead_letters}
    for name, rows in sources.items():
        out[name] = [r for r in rows if r["log_offset"] >= stored.get(r["log_partition"], 0)]
    return out


def _decoded(row: dict[str, Any]) -> dict[str, Any]:
    payload = row.get("payload")
    if isinstance(payload, str):
        return {**row, "payload": msgspec.json.decode(payload)}
    return row


def _canonical(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).hex()
    return value


class AuditDigest:
    """Digest of audit rows that does not depend on the order partitions arrive in.

    Rows are chained per (table, partition) in offset order, and the chains
    are combined in a fixed order, so the fold's interleaved output and the
    database's sorted read-back give the same value.
    """

    def __init__(self) -> None:
        self._chains: dict[tuple[str, int], Any] = {}
        self._positions: dict[int, int] = {}

    def _chain(self, table: str, partition: int) -> Any:
        key = (table, partition)
        chain = self._chains.get(key)
        if chain is None:
            chain = self._chains[key] = hashlib.sha256()
        return chain

    def add(self, table: str, row: Mapping[str, Any]) -> None:
        columns = _COLUMNS[table]
        values = [_canonical(row.get(c)) for c in columns]
        if "payload" in row and isinstance(row["payload"], str):
            # JSON text (the fold's, or PostgreSQL's `json` column, which keeps
            # the text as written) is hashed as is; a decoded value (SQLite via
            # SQLAlchemy) is re-encoded sorted, which gives the fold's text back.
            values[columns.index("payload")] = msgspec.Raw(row["payload"])
        self._chain(table, int(row["log_partition"])).update(_json.encode(values))

    def add_changes(self, changes: Changes) -> None:
        """The rows of a folded batch; the same bytes `add` would hash, row by row.

        Rows from the fold carry every column, and their only non-JSON
        values are UUIDs (encoded as their canonical text, as `_canonical`
        renders them) and the raw bytes of dead letters (taken the slow way).
        """
        encode = _json.encode
        raw = msgspec.Raw
        for name, rows in (("audit", changes.audit), ("deployments", changes.deployments),
                           ("lease_history", changes.lease_history)):
            if not rows:
                continue
            pick = _PICK[name]
            payload = _PAYLOAD_INDEX.get(name)
            chain = None
            partition = -1
            for row in rows:
                if row["log_partition"] != partition:
                    partition = row["log_partition"]
                    chain = self._chain(name, int(partition))
                values = list(pick(row))
                if payload is not None and isinstance(values[payload], str):
                    # Not decoded and re-encoded: that cost more than the fold.
                    values[payload] = raw(values[payload])
                chain.update(encode(values))  # type: ignore[union-attr]
        for row in changes.dead_letters:
            self.add("dead_letters", row)

    def adder(self, table: str) -> Callable[[Sequence[Any]], None]:
        """Adds rows read back by `AuditStore.snapshot_digest` (columns in `_COLUMNS`
        order, UUIDs and JSON as text, bytes as hex): the same bytes as `add`."""
        payload = _PAYLOAD_INDEX.get(table)
        encode = _json.encode
        raw = msgspec.Raw
        chain_of = self._chain
        state: list[Any] = [-1, None]

        def add(row: Sequence[Any]) -> None:
            values = list(row)
            if values[0] != state[0]:
                state[0] = values[0]
                state[1] = chain_of(table, int(values[0]))
            if payload is not None and values[payload] is not None:
                values[payload] = raw(values[payload])  # `json` keeps the text as written
            state[1].update(encode(values))

        return add

    def positions(self, positions: Mapping[int, int]) -> None:
        self._positions.update(positions)

    def export_chains(self) -> dict[tuple[str, int], bytes]:
        """The finished chains (picklable), for a parallel rebuild's parent to merge."""
        return {key: chain.digest() for key, chain in self._chains.items()}

    def import_chains(self, chains: Mapping[tuple[str, int], bytes]) -> None:
        """Adopt another digest's finished chains; each (table, partition) has one owner."""
        for key, value in chains.items():
            if key in self._chains:
                raise ValueError(f"chain {key} exported twice")
            self._chains[key] = _Finished(value)

    def hexdigest(self) -> str:
        h = hashlib.sha256()
        for key in sorted(self._chains):
            h.update(f"{key[0]}/{key[1]}:".encode())
            h.update(self._chains[key].digest())
        for p, o in sorted(self._positions.items()):
            h.update(f"{p}:{o};".encode())
        return h.hexdigest()


class _Finished:
    """A chain computed elsewhere: only its digest is known."""

    def __init__(self, value: bytes) -> None:
        self._value = value

    def digest(self) -> bytes:
        return self._value

    def update(self, data: bytes) -> None:
        raise RuntimeError("a finished chain cannot be extended")


_COLUMNS: dict[str, list[str]] = {
    name: [c.name for c in table.columns if c.name != "id"] for name, table in ROW_TABLES
}
_PICK = {name: operator.itemgetter(*columns) for name, columns in _COLUMNS.items()}
_PAYLOAD_INDEX = {name: columns.index("payload") for name, columns in _COLUMNS.items()
                  if "payload" in columns}
# Every digested table starts with the partition (the chain a row belongs to).
assert all(columns[0] == "log_partition" for columns in _COLUMNS.values())


def _copy_out_columns(table: Table) -> tuple[str, list[str]]:
    """SELECT list and binary COPY types giving each column as `AuditDigest.add` sees it."""
    exprs: list[str] = []
    types: list[str] = []
    for column in table.columns:
        if column.name == "id":
            continue
        name = f'"{column.name}"'
        kind = column.type
        if isinstance(kind, LargeBinary):
            exprs.append(f"encode({name}, 'hex')")
            types.append("text")
        elif isinstance(kind, Boolean):
            exprs.append(name)
            types.append("bool")
        elif isinstance(kind, Integer):  # BigInteger too
            exprs.append(f"{name}::int8")
            types.append("int8")
        else:  # strings; UUIDs and JSON as their text
            exprs.append(f"{name}::text")
            types.append("text")
    return ", ".join(exprs), types
