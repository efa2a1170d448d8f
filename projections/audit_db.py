"""Engines for the audit store: PostgreSQL (psycopg 3) or SQLite files.

On SQLite each audit generation is its own database file attached under the
generation's schema name, so the same models and migrations serve both.
"""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.pool import NullPool

from eventlog.private_files import private_sqlite

GEN_PREFIX = "audit_g"


def normalise_url(url: str, *, asyncio: bool) -> str:
    """Accept plain postgresql://, sqlite:///path or a bare file path."""
    if "://" not in url:
        url = f"sqlite:///{Path(url).resolve()}"
    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    elif backend == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite" if asyncio else "sqlite")
        if not parsed.database or parsed.database == ":memory:":
            raise ValueError("the SQLite audit store needs a file path")
    else:
        raise ValueError(f"unsupported audit database {backend!r}")
    return parsed.render_as_string(hide_password=False)


def sqlite_generation_file(main: str, schema: str) -> str:
    return f"{main}.{schema}"


def _generation_files(main: str) -> list[str]:
    return [path for path in sorted(glob.glob(f"{glob.escape(main)}.{GEN_PREFIX}*"))
            if not path.endswith(("-wal", "-shm", "-journal"))]


def _private_files(main: str) -> None:
    """The audit files (every tenant's resources and who made them): the platform's
    user only; made so before SQLite creates them, tightened if an older run did."""
    for path in (main, *_generation_files(main)):
        private_sqlite(Path(path))


def _attach_all(dbapi_conn: Any, main: str) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        for path in _generation_files(main):
            schema = path.rsplit(".", 1)[1]
            cur.execute(f"ATTACH DATABASE ? AS {schema}", (path,))
    finally:
        cur.close()


def _sqlite_main(url: str) -> str | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    return str(Path(str(parsed.database)).resolve())


def make_sync_engine(url: str) -> Engine:
    full = normalise_url(url, asyncio=False)
    main = _sqlite_main(full)
    if main is None:
        return create_engine(full, pool_pre_ping=True)
    _private_files(main)
    # NullPool: every connection attaches the generation files that exist now,
    # so a generation created by a rebuild is visible to the next connection.
    engine = create_engine(full, poolclass=NullPool)
    event.listen(engine, "connect", lambda c, _r: _attach_all(c, main))
    return engine


def make_async_engine(url: str) -> AsyncEngine:
    full = normalise_url(url, asyncio=True)
    main = _sqlite_main(full)
    if main is None:
        return create_async_engine(full, pool_size=10, max_overflow=10, pool_pre_ping=True)
    _private_files(main)
    engine = create_async_engine(full, poolclass=NullPool)
    event.listen(engine.sync_engine, "connect", lambda c, _r: _attach_all(c, main))
    return engine


def attach_generation(connection: Connection, schema: str) -> None:
    """Create (if needed) and attach a generation's SQLite file on this connection."""
    main = _sqlite_main(connection.engine.url.render_as_string(hide_password=False))
    assert main is not None
    attached = {row[1] for row in connection.exec_driver_sql("PRAGMA database_list")}
    if schema not in attached:
        path = sqlite_generation_file(main, schema)
        private_sqlite(Path(path))
        connection.exec_driver_sql(f"ATTACH DATABASE ? AS {schema}", (path,))


def ensure_generation_schema(connection: Connection, schema: str) -> None:
    connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))


def drop_generation_storage(connection: Connection, schema: str) -> None:
    if connection.dialect.name == "sqlite":
        main = _sqlite_main(connection.engine.url.render_as_string(hide_password=False))
        assert main is not None
        attached = {row[1] for row in connection.exec_driver_sql("PRAGMA database_list")}
        if schema in attached:
            connection.exec_driver_sql(f"DETACH DATABASE {schema}")
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(sqlite_generation_file(main, schema) + suffix).unlink(missing_ok=True)
    else:
        connection.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


def registered_generations(connection: Connection) -> list[int]:
    if not inspect(connection).has_table("wdl_audit_generations"):
        return []  # a fresh database: nothing registered yet
    rows = connection.execute(text(
        "SELECT generation FROM wdl_audit_generations ORDER BY generation")).all()
    return [int(r[0]) for r in rows]
