"""Wrangler parity end to end: `wdl deploy --env`, `routes` served on the claimed host and
path, `workers_dev = false`, and a D1 `database_id` placeholder, on the real servers
(Kafka, Redis, PostgreSQL, S3, workerd) and on `wdl dev`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import WDL, Stack, platform_stack

pytestmark = pytest.mark.integration
COMPONENTS = frozenset({"api", "projector", "state", "data", "gateway", "d1"})

WORKER = """\
export default {
  async fetch(request, env) {
    const d1 = env.DB ? (await env.DB.prepare("select 41 + 1 as n").first()).n : null;
    return Response.json({
      mode: env.MODE ?? null, path: new URL(request.url).pathname, d1,
      defined: typeof __MODE__ === "undefined" ? null : __MODE__,
    });
  },
};
"""

TOML = """\
name = "shop"
main = "src/index.js"
compatibility_date = "2025-06-01"
placement = { mode = "smart" }

[vars]
MODE = "top"

[[d1_databases]]
binding = "DB"
database_name = "shop-db"
database_id = "local-db"

[env.staging]
define = { __MODE__ = '"defined-for-staging"' }
[env.staging.vars]
MODE = "staging"
[[env.staging.d1_databases]]
binding = "DB"
database_name = "shop-staging-db"
database_id = "local-db"

[env.production]
name = "shop-live"
workers_dev = false
routes = [
  { pattern = "shop.parity.test/api*", zone_name = "parity.test" },
  "www.parity.test/*",
  { pattern = "parity-shop.test", custom_domain = true },
]
[env.production.vars]
MODE = "production"
"""


def _project(tmp: Path, toml: str = TOML) -> Path:
    root = tmp / "shop"
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "wrangler.toml").write_text(toml)
    (root / "src" / "index.js").write_text(WORKER)
    return root


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=COMPONENTS) as s:
        yield s


async def _get(stack: Stack, host: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.get(stack.gateway + path, headers={"host": host})


async def _deploy(stack: Stack, *args: str, ok: bool = True) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `wdl deploy ARGS`."""
    proc = await asyncio.create_subprocess_exec(
        WDL, "deploy", *args, env=stack.env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    text = " ".join((out.decode() + err.decode()).split())  # rich wraps long lines
    if ok:
        assert proc.returncode == 0, text
    return proc.returncode or 0, text


async def test_env_routes_workers_dev_and_d1_placeholder(stack: Stack, tmp_path: Path) -> None:
    await stack.wdl("ns", "create", "par")
    project = _project(tmp_path)

    # An environment that does not exist: refused before anything, naming the defined ones.
    code, text = await _deploy(stack, str(project), "--ns", "par", "--env", "stage", ok=False)
    assert code == 2 and "no environment 'stage'" in text
    assert "production, staging" in text, text

    # --env staging, bundled by wrangler with the same --env (its `define` applies):
    # `<name>-<env>`, the environment's vars and D1 entry, its placeholder id accepted.
    code, text = await _deploy(stack, str(project), "--ns", "par", "--env", "staging")
    assert "`placement` is ignored by WDL" in text, text
    assert "shop-staging" in text
    r = await _get(stack, "par.workers.local", "/shop-staging/x")
    assert r.status_code == 200, r.text
    assert r.json() == {"mode": "staging", "path": "/x", "d1": 42,
                        "defined": "defined-for-staging"}
    rows = json.loads(await stack.wdl("d1", "list", "--ns", "par", "--json"))
    assert [r["name"] for r in rows] == ["shop-staging-db"]
    assert rows[0]["database_id"] != "local-db" and len(rows[0]["database_id"]) == 36

    # The top level: `shop`, its own D1 database (the same placeholder id again).
    await _deploy(stack, str(project), "--ns", "par", "--no-bundle")
    r = await _get(stack, "par.workers.local", "/shop/")
    assert r.json() == {"mode": "top", "path": "/", "d1": 42, "defined": None}, r.text
    rows = json.loads(await stack.wdl("d1", "list", "--ns", "par", "--json"))
    assert sorted(r["name"] for r in rows) == ["shop-db", "shop-staging-db"]

    # --env production: its own name, routes claimed, off the namespace URL. D1 is not
    # inherited (wrangler's warning says so).
    code, text = await _deploy(stack, str(project), "--ns", "par", "--env", "production",
                               "--no-bundle")
    assert "`d1_databases` exists at the top level, but not on `env.production`" in text
    hosts = json.loads(await stack.wdl("hosts", "list", "--ns", "par", "--json"))
    assert sorted((h["pattern"], h["match"], h["worker"]) for h in hosts) == [
        ("parity-shop.test", "prefix", "shop-live"),
        ("shop.parity.test/api", "prefix", "shop-live"),
        ("www.parity.test", "prefix", "shop-live")]
    for host, path in [("shop.parity.test", "/api"), ("shop.parity.test", "/api/orders"),
                       ("shop.parity.test", "/apis"), ("www.parity.test", "/"),
                       ("www.parity.test", "/a/b"), ("parity-shop.test", "/anything"),
                       ("SHOP.parity.test:8080", "/api/x")]:
        r = await _get(stack, host, path)
        assert (r.status_code, r.json()) == (200, {"mode": "production", "path": path,
                                                   "d1": None, "defined": None}), (host, path)
    r = await _get(stack, "shop.parity.test", "/other")
    assert (r.status_code, r.json()["error"]) == (404, "unknown_host")
    for host in ("par.workers.local", "par.workers.local.", "PAR.workers.local:80"):
        r = await _get(stack, host, "/shop-live/")
        assert r.status_code == 404, (host, r.text)
        assert r.json()["error"] == "workers_dev_disabled", (host, r.text)
    # The other workers of the namespace keep their namespace URL.
    assert (await _get(stack, "par.workers.local", "/shop/")).status_code == 200

    # Deployed again without `workers_dev = false`: back on the namespace URL, routes kept
    # (a claim already held is not claimed twice).
    project.joinpath("wrangler.toml").write_text(TOML.replace("workers_dev = false\n", ""))
    await _deploy(stack, str(project), "--ns", "par", "--env", "production", "--no-bundle")
    r = await _get(stack, "par.workers.local", "/shop-live/y")
    assert (r.status_code, r.json()["path"]) == (200, "/y"), r.text
    assert (await _get(stack, "www.parity.test", "/z")).status_code == 200
    assert len(json.loads(await stack.wdl("hosts", "list", "--ns", "par", "--json"))) == 3


async def test_route_another_worker_holds_is_refused_and_changes_nothing(
        stack: Stack, tmp_path: Path) -> None:
    await stack.wdl("ns", "create", "par2")
    project = _project(tmp_path)
    await _deploy(stack, str(project), "--ns", "par2", "--env", "production", "--no-bundle")
    other = tmp_path / "other"
    (other / "src").mkdir(parents=True)
    (other / "wrangler.toml").write_text(
        'name = "other"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n'
        'routes = ["fresh.parity.test/*", "www.parity.test/*"]\n')
    (other / "src" / "index.js").write_text(WORKER)
    code, text = await _deploy(stack, str(other), "--ns", "par2", "--no-bundle", ok=False)
    assert code != 0 and "route_in_use" in text, text
    hosts = json.loads(await stack.wdl("hosts", "list", "--ns", "par2", "--json"))
    assert "fresh.parity.test" not in {h["pattern"] for h in hosts}
    r = await _get(stack, "par2.workers.local", "/other/")
    assert r.json()["error"] == "worker_not_found", r.text


def test_wdl_dev_serves_routes_and_workers_dev_false(dev: Dev, tmp_path: Path) -> None:
    dev.start()
    dev.cli("ns", "create", "pard")
    dev.cli("deploy", str(_project(tmp_path)), "--ns", "pard", "--env", "production",
            "--no-bundle")
    r = dev.get("www.parity.test", "/p")
    assert (r.status_code, r.json()["mode"], r.json()["path"]) == (200, "production", "/p")
    r = dev.get("shop.parity.test", "/api/v1")
    assert (r.status_code, r.json()["path"]) == (200, "/api/v1")
    for host in ("pard.workers.local", "pard.workers.local."):
        r = dev.get(host, "/shop-live/")
        assert (r.status_code, r.json()["error"]) == (404, "workers_dev_disabled")
