"""Real drivers through the Hyperdrive binding (issue 26): postgres.js and `pg`, the npm
packages pinned in tests/fixtures/hyperdrive_postgresjs and hyperdrive_pg, bundled by
`wdl deploy` (the pinned wrangler, nodejs_compat), each reading env.HD.connectionString
as Cloudflare's guide writes it. Their connect() goes through the gateway's (or the
objects process's) egress to the platform's real PgBouncer, then to an origin role and
database of this test in the harness's PostgreSQL.

Each tenant runs a prepared statement, a committed and a rolled-back transaction and an
SQL error (42P01, the driver's own error class), from its worker, from a Durable Object
method and (postgres.js) from a loader child; on the real servers (Kafka, Redis,
PostgreSQL, the hyperdrive component) and on `wdl dev`. The same project under Miniflare
(Hyperdrive straight to the origin) must give the same answers, but for the loader child
(tests/miniflare/hyperdrive_reference.mjs, docs/compatibility.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.hyperdrive_drivers import DRIVERS, WORKERS, Origin, expected, origin, project
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import platform_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

COMPONENTS = frozenset({"api", "projector", "state", "data", "gateway", "objects",
                        "hyperdrive"})
WRANGLER = ROOT / "workerd" / "node_modules" / ".bin" / "wrangler"
# Where each tenant runs its scenario: its worker, a Durable Object method, and (the
# postgres.js project) a loader child it loads with the connection string.
PLACES = {"postgresjs": ("/run", "/object/run", "/child/run"), "pg": ("/run", "/object/run")}


@pytest.fixture(scope="module")
def db(services: Endpoints) -> Iterator[Origin]:
    assert services.database_url
    with origin(services.database_url) as o:
        yield o


async def run(base: str, host: str, worker: str, place: str, tag: str,
              timeout: float = 30) -> dict[str, Any]:
    """One /run; retried while the pooler has not loaded the new config yet (it re-reads
    the projection every 0.5 s), so a first refusal is not the answer."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=60) as client:
        while True:
            r = await client.get(f"{base}/{worker}{place}", params={"tag": tag},
                                 headers={"host": host})
            body: dict[str, Any] = r.json() if r.headers.get("content-type", "").startswith(
                "application/json") else {"status": r.status_code, "text": r.text}
            if r.status_code == 200 or time.monotonic() > deadline:
                return body
            await asyncio.sleep(0.3)


def config_id(out: str) -> str:
    made = json.loads(out)
    return str(made["id"])


async def test_drivers_on_the_real_servers(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: Origin) -> None:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=COMPONENTS) as stack:
        assert stack.platform.hyperdrive is not None, "PgBouncer is not installed"
        await stack.wdl("ns", "create", "acme")
        cid = config_id(await stack.wdl("hyperdrive", "create", "main-db", "--ns", "acme",
                                        "--connection-string", "-", "--json",
                                        stdin=db.url + "\n"))
        for driver in DRIVERS:
            await stack.deploy("acme", await asyncio.to_thread(project, driver, tmp_path, cid))
        for driver in DRIVERS:
            for place in PLACES[driver]:
                tag = f"{driver}-{place}-{uuid.uuid4().hex[:6]}"
                got = await run(stack.gateway, "acme.workers.local", WORKERS[driver], place, tag)
                assert got == expected(driver, db), (driver, place, got)


async def test_a_refused_pooler_connection_is_the_drivers_error_at_once(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: Origin) -> None:
    """Beyond the namespace's bound of open connections (here 1 per process) the egress
    refuses the socket. The driver must say why, as its own error (PostgreSQL's
    too_many_connections): a bare close left postgres.js with `CONNECTION_CLOSED` and no
    reason after its connect_timeout (seen in the bench's 200 concurrent requests)."""
    monkeypatch.setenv("WDL_SOCKETS_PER_NAMESPACE", "1")
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=COMPONENTS) as stack:
        await stack.wdl("ns", "create", "acme")
        cid = config_id(await stack.wdl("hyperdrive", "create", "main-db", "--ns", "acme",
                                        "--connection-string", "-", "--json",
                                        stdin=db.url + "\n"))
        for driver in DRIVERS:
            await stack.deploy("acme", await asyncio.to_thread(project, driver, tmp_path, cid))
        await run(stack.gateway, "acme.workers.local", WORKERS["postgresjs"], "/run", "warm")
        message = ("connect() refused by the platform: 1 connections of namespace acme are "
                   "already open in this process")
        # pg does not retry: its connect() fails at once with the refusal.
        got = await run(stack.gateway, "acme.workers.local", WORKERS["pg"], "/two", "two")
        assert got["first"] == 1, got
        assert got["second"] == {"class": "DatabaseError", "code": "53300",
                                 "message": message}, got
        assert got["second_ms"] < 2000, got
        got = await run(stack.gateway, "acme.workers.local", WORKERS["postgresjs"], "/two",
                        "two")
        assert got["first"] == 1, got
        assert got["second"] == {"class": "PostgresError", "code": "53300",
                                 "message": message}, got
        # postgres.js retried the refused connection (backoff) until its connect_timeout
        # (3 s here), then reported the last refusal.
        assert got["second_ms"] < 15000, got


def test_drivers_on_wdl_dev(dev: Dev, tmp_path: Path, db: Origin) -> None:
    dev.start()
    dev.cli("ns", "create", "acme")
    cid = config_id(dev.cli("hyperdrive", "create", "main-db", "--ns", "acme",
                            "--connection-string", "-", "--json", stdin=db.url + "\n"))
    for driver in DRIVERS:
        dev.cli("deploy", str(project(driver, tmp_path, cid)), "--ns", "acme")
    base = f"http://127.0.0.1:{dev.gateway_port}"
    for driver in DRIVERS:
        for place in PLACES[driver]:
            tag = f"dev-{driver}-{place}-{uuid.uuid4().hex[:6]}"
            got = asyncio.run(run(base, "acme.workers.local", WORKERS[driver], place, tag))
            assert got == expected(driver, db), (driver, place, got)


def test_miniflare_gives_the_same_answers(tmp_path: Path, db: Origin) -> None:
    """The reference: the postgres.js and pg projects bundled by the pinned wrangler, under
    Miniflare with `hyperdrives` naming the origin's real connection string."""
    for driver in DRIVERS:
        directory = project(driver, tmp_path, "0" * 32)
        out = tmp_path / f"out-{driver}"
        subprocess.run([str(WRANGLER), "deploy", "--dry-run", "--outdir", str(out)],
                       cwd=directory, capture_output=True, text=True, timeout=180, check=True,
                       env={**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "true"})
        done = subprocess.run(["node", str(ROOT / "tests/miniflare/hyperdrive_reference.mjs"),
                               str(out / "index.js"), db.url, f"mf-{driver}",
                               *PLACES[driver]],
                              cwd=ROOT, capture_output=True, text=True, timeout=300,
                              check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        answers: dict[str, Any] = json.loads(done.stdout)
        for place in PLACES[driver]:
            if place == "/child/run":
                # Miniflare's Hyperdrive host is reached only through the binding's own
                # socket override, in the isolate that holds the binding: a loader child
                # given the connection string cannot connect (docs/compatibility.md). On
                # WDL the pooler is the egress's destination for the parent's bound ids,
                # so the child's connect() reaches it (the two tests above).
                assert answers[place] == {"fatal": "Error: proxy request failed, cannot "
                                          "connect to the specified address"}, answers[place]
                continue
            assert answers[place] == expected(driver, db), (driver, place, answers[place])
