"""Alembic environment: one history applied to the control tables and to each
audit generation schema (``audit_g{N}``).

`alembic upgrade head` (DATABASE_URL in the environment) migrates the control
tables, creates generation 1 if there is none, then migrates every registered
generation. The platform runs the same scripts for a single new generation
during a rebuild by passing ``config.attributes["schemas"]``.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import Connection, text

from projections.audit_db import (
    attach_generation,
    ensure_generation_schema,
    make_sync_engine,
    registered_generations,
)
from projections.audit_models import generation_schema

config = context.config


def _run(connection: Connection, target: str, schema: str | None) -> None:
    context.configure(
        connection=connection,
        target_metadata=None,
        version_table="alembic_version_control" if target == "control" else "alembic_version",
        version_table_schema=schema,
        # Extra options reach the migration scripts as op.get_context().opts.
        wdl_target=target,
        wdl_schema=schema,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _migrate(connection)
        return
    url = config.attributes.get("url") or os.environ.get("DATABASE_URL")
    if not url:
        raise SystemExit("set DATABASE_URL (postgresql://… or sqlite:///…)")
    engine = make_sync_engine(url)
    try:
        with engine.connect() as conn:
            _migrate(conn)
            conn.commit()
    finally:
        engine.dispose()


def _downgrading() -> bool:
    """Direction of this run: generations go first on the way down."""
    if "downgrading" in config.attributes:
        return bool(config.attributes["downgrading"])
    cmd = getattr(config.cmd_opts, "cmd", None)  # the `alembic` command line
    fn = cmd[0] if isinstance(cmd, tuple) and cmd else None
    return getattr(fn, "__name__", "") == "downgrade"


def _migrate(connection: Connection) -> None:
    only = config.attributes.get("schemas")
    downgrading = _downgrading()
    if only is None:
        # Generations first on the way down, control tables first on the way up.
        gens = registered_generations(connection)
        if not gens and not downgrading:
            gens = [1]
        if not downgrading:
            _run(connection, "control", None)
            if not registered_generations(connection):
                connection.execute(text(
                    "INSERT INTO wdl_audit_generations (generation, created_at_ms, state) "
                    "VALUES (1, 0, 'live')"))
                connection.execute(text(
                    "INSERT INTO wdl_audit_current (id, generation) VALUES (1, 1)"))
        schemas = [generation_schema(g) for g in gens]
    else:
        schemas = list(only)
    for schema in schemas:
        if connection.dialect.name == "sqlite":
            attach_generation(connection, schema)
        else:
            ensure_generation_schema(connection, schema)
        _run(connection, "audit", schema)
    if only is None and downgrading:
        _run(connection, "control", None)


run_migrations_online()
