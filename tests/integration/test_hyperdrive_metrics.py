"""The pooler's metrics and health on the real servers: the Hyperdrive component runs the
real PgBouncer in front of the harness's real PostgreSQL; tenants' connections are made
with psycopg as the egress makes them (tests/integration/test_hyperdrive_pooler.py), and
the component's own `/metrics` and `/healthz` (behind the internal token) are read as
Prometheus and `wdl health` read them.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from harness.endpoints import Endpoints
from tests.conftest import new_database
from tests.integration.test_hyperdrive_pooler import (
    INTERNAL,
    HdStack,
    hyperdrive_stack,
    origin_role,
    origin_url,
    pooled,
    until,
)

pytestmark = pytest.mark.integration
BEARER = {"authorization": f"Bearer {INTERNAL}"}
SAMPLE = re.compile(r'^(wdl_hyperdrive_[a-z_]+)(?:\{namespace="([^"]*)"\})? (\S+)$', re.M)


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[HdStack]:
    monkeypatch.setenv("WDL_HYPERDRIVE_STATS_S", "0.2")  # the console read every 0.2 s
    async with hyperdrive_stack(services, fresh_database, unique_name, tmp_path,
                                monkeypatch) as s:
        yield s


def health_url(stack: HdStack) -> str:
    server = stack.platform.hyperdrive_health
    assert server is not None
    return server.url


async def scrape(stack: HdStack) -> dict[tuple[str, str], float]:
    """(metric, namespace or "") -> value."""
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(health_url(stack) + "/metrics", headers=BEARER)
    assert r.status_code == 200, r.text
    return {(m, ns or ""): float(v) for m, ns, v in SAMPLE.findall(r.text)}


async def until_metrics(stack: HdStack, check: Callable[[dict[tuple[str, str], float]], bool],
                        timeout: float = 15.0) -> dict[tuple[str, str], float]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await scrape(stack)
        if check(got):
            return got
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"metrics never matched: {got}")
        await asyncio.sleep(0.2)


class Held:
    """`n` client connections through the pooler, each in an open transaction (so each
    holds its server connection) until released."""

    def __init__(self, stack: HdStack, value: dict[str, Any]) -> None:
        self.stack, self.value = stack, value
        self.conns: list[psycopg.Connection[Any]] = []

    def open(self, n: int) -> None:
        for _ in range(n):
            conn = pooled(self.stack, self.value)
            conn.execute("select pg_backend_pid()")  # a server linked, BEGIN left open
            self.conns.append(conn)

    def release(self) -> None:
        for conn in self.conns:
            conn.rollback()
            conn.close()
        self.conns.clear()


async def make_config(stack: HdStack, ns: str, url: str,
                      pool_size: int = 0) -> tuple[str, dict[str, Any]]:
    created = json.loads(await stack.wdl(
        "hyperdrive", "create", "db", "--ns", ns, "--connection-string", "-", "--json",
        "--pool-size", str(pool_size), stdin=url + "\n"))
    value = await stack.deploy_bound(ns, "api", created["id"])
    await until(lambda: pooled(stack, value).close())  # served
    return created["id"], value


async def test_pool_metrics_follow_held_connections(
        stack: HdStack, services: Endpoints, unique_name: Callable[[str], str]) -> None:
    ns, other = unique_name("hdm"), unique_name("hdo")
    for name in (ns, other):
        await stack.wdl("ns", "create", name)
    hd = stack.platform.hyperdrive
    assert hd is not None
    with new_database(services) as db, origin_role(services, db) as (role, password):
        url = origin_url(db, role, password)
        cid, value = await make_config(stack, ns, url)
        await make_config(stack, other, url)
        got = await until_metrics(stack, lambda m: m.get(("wdl_hyperdrive_configs", "")) == 2
                                  and m.get(("wdl_hyperdrive_console_up", "")) == 1)
        assert got[("wdl_hyperdrive_configs_unopened", "")] == 0
        assert got[("wdl_hyperdrive_reloads_total", "")] >= 1  # the second config: a SIGHUP

        held = Held(stack, value)
        try:
            await asyncio.to_thread(held.open, 3)
            got = await until_metrics(
                stack, lambda m: m.get(("wdl_hyperdrive_clients_active", ns)) == 3
                and m.get(("wdl_hyperdrive_servers_active", ns)) == 3)
            # The other namespace's pools are apart.
            assert got[("wdl_hyperdrive_clients_active", other)] == 0
            assert got[("wdl_hyperdrive_servers_active", other)] == 0
            assert got[("wdl_hyperdrive_clients_waiting", ns)] == 0
        finally:
            await asyncio.to_thread(held.release)
        got = await until_metrics(
            stack, lambda m: m.get(("wdl_hyperdrive_clients_active", ns)) == 0
            and m.get(("wdl_hyperdrive_servers_active", ns)) == 0)
        # The origin connections stay pooled (idle or to be checked), not closed.
        assert got[("wdl_hyperdrive_servers_idle", ns)] + \
            got[("wdl_hyperdrive_servers_used", ns)] >= 1
        # SHOW STATS: the held connections' queries counted for their namespace.
        assert got[("wdl_hyperdrive_queries_total", ns)] >= 3
        assert got[("wdl_hyperdrive_transactions_total", ns)] >= 3
        # Read every 0.2 s, the console never failed (psycopg must not prepare SHOW).
        assert got[("wdl_hyperdrive_console_failures_total", "")] == 0

        # Health: alive, listening, the count of configs (never which).
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.get(health_url(stack) + "/healthz", headers=BEARER)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ok"] is True and body["configs"] == 2 and body["unopened"] == 0
        assert body["pooler"] == {"alive": True, "listening": True, "address": hd.address}
        assert cid not in r.text


async def test_waiting_clients_and_their_wait(
        stack: HdStack, services: Endpoints, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("hdw")
    await stack.wdl("ns", "create", ns)
    with new_database(services) as db, origin_role(services, db) as (role, password):
        _, value = await make_config(stack, ns, origin_url(db, role, password), pool_size=1)
        held = Held(stack, value)
        await asyncio.to_thread(held.open, 1)  # the pool's only server connection
        queued = await asyncio.to_thread(pooled, stack, value)
        done = threading.Event()

        def wait_for_server() -> None:
            queued.execute("select 1")  # queued until the held one lets go
            done.set()

        waiting = asyncio.create_task(asyncio.to_thread(wait_for_server))
        try:
            got = await until_metrics(
                stack, lambda m: m.get(("wdl_hyperdrive_clients_waiting", ns)) == 1
                and m.get(("wdl_hyperdrive_clients_maxwait_seconds", ns), 0) >= 1)
            assert got[("wdl_hyperdrive_servers_active", ns)] == 1
            assert not done.is_set()
        finally:
            await asyncio.to_thread(held.release)
            await asyncio.wait_for(waiting, 20)
            queued.close()
        assert done.is_set()
        got = await until_metrics(
            stack, lambda m: m.get(("wdl_hyperdrive_clients_waiting", ns)) == 0
            and m.get(("wdl_hyperdrive_clients_maxwait_seconds", ns)) == 0)
        assert got[("wdl_hyperdrive_client_wait_seconds_total", ns)] >= 0


async def test_a_restarted_pgbouncer_is_counted_and_read_again(stack: HdStack) -> None:
    hd = stack.platform.hyperdrive
    assert hd is not None and hd.alive
    await until_metrics(stack, lambda m: m.get(("wdl_hyperdrive_console_up", "")) == 1)
    pid = int((hd.workdir / "pgbouncer.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    await until_metrics(stack, lambda m: m.get(("wdl_hyperdrive_restarts_total", "")) == 1)
    assert hd.alive and await hd.listening()
    # The console of the new PgBouncer is read (the old connection was dropped).
    for _ in range(50):
        if await hd.poll_stats():
            break
        await asyncio.sleep(0.2)
    else:
        raise AssertionError("the restarted PgBouncer's console never answered")
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(health_url(stack) + "/healthz", headers=BEARER)
    assert r.status_code == 200 and r.json()["restarts"] == 1, r.text
