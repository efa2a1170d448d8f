"""PgBouncer's admin console, read for metrics (`SHOW POOLS`, `SHOW STATS`).

The console is the `pgbouncer` pseudo-database; only the component's admin user
(`wdl_pooler_admin`, a password made at each start) logs in, from 127.0.0.1 (hba,
services/hyperdrive/pgbouncer.py). The console speaks the simple query protocol
only: psycopg uses it for a query without parameters that it does not prepare, in
autocommit (no BEGIN).

One connection is kept and made again after any failure (PgBouncer restarted, a
timeout). Every call is bounded by `timeout` so a stuck console delays nothing but the
next poll. Failures are logged by their class (and SQLSTATE) only: never the conninfo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import psycopg
from psycopg.rows import dict_row

log = logging.getLogger("wdl.hyperdrive")

CONSOLE_DB = "pgbouncer"
# hba admits the admin user from loopback only; a pooler on one non-loopback address
# also listens there for it (pgbouncer.py's `listen_addresses`).
CONSOLE_HOST = "127.0.0.1"


class Console:
    def __init__(self, port: int, user: str, password: str, timeout: float = 3.0) -> None:
        self.port = port
        self._user = user
        self._password = password
        self.timeout = timeout
        self._conn: psycopg.AsyncConnection[dict[str, Any]] | None = None
        self.failing = False

    async def _connect(self) -> psycopg.AsyncConnection[dict[str, Any]]:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                host=CONSOLE_HOST, port=self.port, user=self._user,
                password=self._password, dbname=CONSOLE_DB, autocommit=True,
                connect_timeout=max(1, int(self.timeout)), row_factory=dict_row,
                # psycopg prepares a query run 5 times (extended protocol): the console
                # refuses it ("extended query protocol not supported by admin console").
                prepare_threshold=None,
                application_name="wdl-hyperdrive-metrics")
        return self._conn

    async def _show(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        conn = await self._connect()
        pools = await (await conn.execute("SHOW POOLS")).fetchall()
        stats = await (await conn.execute("SHOW STATS")).fetchall()
        return pools, stats

    async def poll(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
        """(SHOW POOLS rows, SHOW STATS rows), or None when the console did not answer
        within `timeout` (logged once per failing spell)."""
        try:
            got = await asyncio.wait_for(self._show(), self.timeout)
        except asyncio.CancelledError:
            raise
        except (psycopg.Error, OSError, TimeoutError) as exc:
            await self.close()
            if not self.failing:
                code = getattr(exc, "sqlstate", None)
                log.warning("hyperdrive: PgBouncer's admin console did not answer (%s%s); "
                            "pool metrics are stale", type(exc).__name__,
                            f" {code}" if code else "")
            self.failing = True
            return None
        if self.failing:
            log.info("hyperdrive: PgBouncer's admin console answers again")
        self.failing = False
        return got

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()
