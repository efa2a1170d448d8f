"""`python -m bench hyperdrive`: a point SELECT through the Hyperdrive binding against the
same driver on Node straight to PostgreSQL, in the same run (issue 26).

The tenant is tests/fixtures/hyperdrive_postgresjs (postgres.js 4.2.0, bundled by `wdl
deploy`, `postgres(env.HD.connectionString, {max: 5, fetch_types: false})` per request
as Cloudflare's guide writes it), on a platform in this process (embedded control plane,
the hyperdrive component running the real PgBouncer) in front of an origin role and
database of its own in the harness's PostgreSQL (DATABASE_URL: `make bench` / the
harness's services.env set it).

* `binding_p50_ms` / `binding_p99_ms`: one HTTP request to the gateway per point SELECT
  (`/point?id=N`: the tenant connects through the egress to the pooler, authenticates,
  queries, ends), `--requests` of them in sequence.
* `bare_p50_ms` / `bare_p99_ms`: the same driver on Node holding one connection straight
  to PostgreSQL, `--queries` point SELECTs in sequence, each timed
  (`ratio_p50_binding_vs_bare`; the issue's goal: <= 2).
* Where the binding's time goes: `http_noop_p50_ms` (a request to the same tenant that
  makes no query), inside the isolate `tenant_first_query_p50_ms` (connection through the
  egress + startup + md5 login + the query) vs `tenant_held_query_ms` (a query on the open
  connection), and on Node `bare_connect_query_p50_ms` (a new connection per query, as
  the tenant must: workerd's sockets live for one request).
* `concurrent_requests` (200) at once: `concurrent_ok` / `concurrent_errors`,
  `concurrent_seconds`, and the origin role's connections in pg_stat_activity sampled
  every 10 ms (`origin_connections_max`) against the pooler's `pool_size`. Each waiting
  request holds its socket to the pooler (session mode queues it there), so the gateway's
  bound of open connections per namespace and process (`sockets_per_namespace`,
  WDL_SOCKETS_PER_NAMESPACE or `--sockets-per-namespace`) also bounds the burst: beyond
  it a connection is refused (53300) and postgres.js retries it with a backoff until its
  connect_timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

from bench.bindings import data_env, percentile
from services.dataplane.gateway import RecyclePolicy
from services.platform import Platform, PlatformOptions
from services.settings import Settings
from tests.hyperdrive_drivers import Origin, origin, project

TOKEN = "wdl_admin_bench"
NS = "bench"
HOST = f"{NS}.workers.local"
WORKER = "hd-postgresjs"
WDL = str(Path(sys.executable).with_name("wdl"))

# The bare driver: postgres.js on Node, one connection held, point SELECTs timed one by
# one; then a fresh connection per query (what a tenant request does).
BARE = """
import postgres from "postgres";
const [url, queries, connects] = [process.argv[2], Number(process.argv[3]),
                                  Number(process.argv[4])];
const sql = postgres(url, { max: 1, fetch_types: false });
for (let i = 0; i < 100; i++) await sql`select id, v from items where id = ${1 + i}`;
const held = [];
for (let i = 0; i < queries; i++) {
  const t = performance.now();
  await sql`select id, v from items where id = ${1 + (i % 1000)}`;
  held.push(performance.now() - t);
}
await sql.end();
const connect = [];
for (let i = 0; i < connects; i++) {
  const t = performance.now();
  const one = postgres(url, { max: 1, fetch_types: false });
  await one`select id, v from items where id = ${1 + i}`;
  await one.end();
  connect.push(performance.now() - t);
}
process.stdout.write(JSON.stringify({ held, connect }));
"""


def ms(values: list[float]) -> tuple[float, float]:
    return round(statistics.median(values), 3), round(percentile(values, 0.99), 3)


def wdl(env: dict[str, str], *args: str, stdin: str | None = None) -> str:
    done = subprocess.run([WDL, *args], env=env, input=stdin, capture_output=True, text=True,
                          timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"wdl {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return done.stdout


def bare(directory: Path, db: Origin, queries: int, connects: int) -> dict[str, list[float]]:
    script = directory / "bare.mjs"
    script.write_text(BARE)
    done = subprocess.run(["node", str(script), db.url, str(queries), str(connects)],
                          cwd=directory, capture_output=True, text=True, timeout=120,
                          check=True)
    out: dict[str, list[float]] = json.loads(done.stdout)
    return out


async def timed_requests(web: httpx.AsyncClient, url: str, count: int) -> list[float]:
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        r = await web.get(url, params={"id": str(1 + i % 1000)})
        out.append((time.perf_counter() - t0) * 1000)
        if r.status_code != 200:
            raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
    return out


async def concurrent(web: httpx.AsyncClient, url: str, count: int, db: Origin
                     ) -> dict[str, Any]:
    """`count` requests at once; the origin role's connections sampled meanwhile."""
    seen: list[int] = []
    stop = asyncio.Event()

    def sample() -> None:
        with psycopg.connect(db.admin_url, autocommit=True) as conn:
            while not stop.is_set():
                row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s",
                                   (db.role,)).fetchone()
                seen.append(int(row[0]) if row else 0)
                time.sleep(0.01)

    sampler = asyncio.create_task(asyncio.to_thread(sample))
    errors: list[str] = []

    async def one(i: int) -> None:
        try:
            r = await web.get(url, params={"id": str(1 + i % 1000)})
            body = r.json() if r.status_code == 200 else None
            if not (isinstance(body, dict) and body.get("id") == 1 + i % 1000):
                errors.append(f"{r.status_code} {r.text[:200]}")
        except httpx.HTTPError as exc:
            errors.append(repr(exc))

    t0 = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    seconds = time.perf_counter() - t0
    stop.set()
    await sampler
    return {"concurrent_requests": count, "concurrent_ok": count - len(errors),
            "concurrent_errors": len(errors), "concurrent_error_sample": errors[:3],
            "concurrent_seconds": round(seconds, 3),
            "origin_connections_max": max(seen, default=0), "origin_samples": len(seen)}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    admin_url = os.environ.get("DATABASE_URL")
    if not admin_url:
        raise SystemExit("bench hyperdrive needs the harness's PostgreSQL: DATABASE_URL "
                         "(set -a; . .wdl/services.env; set +a)")
    with tempfile.TemporaryDirectory(prefix="wdl-bench-") as tmp, origin(admin_url) as db:
        work = Path(tmp)
        settings = Settings.from_env(data_env(work), embedded=True)
        options = PlatformOptions(api_port=0, gateway_port=0, state_port=0, data_port=0,
                                  scheduler_health_port=0, workerd_bin=args.workerd,
                                  recycle=RecyclePolicy(interval=0))
        async with Platform(settings, options) as platform, \
                httpx.AsyncClient(timeout=60, headers={"host": HOST},
                                  limits=httpx.Limits(max_connections=None)) as web:
            assert platform.api is not None and platform.gateway is not None
            if platform.hyperdrive is None:
                raise SystemExit("bench hyperdrive needs PgBouncer (PGBOUNCER_BIN)")
            env = {**os.environ, "WDL_CONTROL_URL": platform.api.url, "WDL_TOKEN": TOKEN,
                   "WDL_CONFIG": str(work / "no-config.toml")}
            await asyncio.to_thread(wdl, env, "ns", "create", NS)
            made = json.loads(await asyncio.to_thread(
                wdl, env, "hyperdrive", "create", "bench-db", "--ns", NS,
                "--connection-string", "-", "--pool-size", str(args.pool_size), "--json",
                stdin=db.url + "\n"))
            directory = await asyncio.to_thread(project, "postgresjs", work, made["id"])
            await asyncio.to_thread(wdl, env, "deploy", str(directory), "--ns", NS)
            gw = f"{platform.gateway.url}/{WORKER}"
            deadline = time.monotonic() + 30
            while (await web.get(gw + "/point", params={"id": "1"})).status_code != 200:
                if time.monotonic() > deadline:
                    raise RuntimeError("the tenant never reached its origin")
                await asyncio.sleep(0.3)
            await timed_requests(web, gw + "/point", 30)  # warm every gateway process
            await timed_requests(web, gw + "/noop", 30)
            result: dict[str, Any] = {"requests": args.requests, "queries": args.queries,
                                      "pool_size": args.pool_size,
                                      "gateway_processes": platform.gateway.processes,
                                      "sockets_per_namespace":
                                          platform.gateway.options.sockets_per_namespace}
            binding = await timed_requests(web, gw + "/point", args.requests)
            noop = await timed_requests(web, gw + "/noop", args.requests)
            inside = [(await web.get(gw + "/timed", params={"n": "20"})).json()
                      for _ in range(args.inside)]
            raw = await asyncio.to_thread(bare, directory, db, args.queries, args.connects)
            result["binding_p50_ms"], result["binding_p99_ms"] = ms(binding)
            result["bare_p50_ms"], result["bare_p99_ms"] = ms(raw["held"])
            result["ratio_p50_binding_vs_bare"] = round(
                result["binding_p50_ms"] / result["bare_p50_ms"], 1)
            result["http_noop_p50_ms"], result["http_noop_p99_ms"] = ms(noop)
            result["tenant_first_query_p50_ms"], _ = ms([x["first_ms"] for x in inside])
            result["tenant_held_query_ms"], _ = ms([x["held_query_ms"] for x in inside])
            result["tenant_end_p50_ms"], _ = ms([x["end_ms"] for x in inside])
            result["bare_connect_query_p50_ms"], result["bare_connect_query_p99_ms"] = \
                ms(raw["connect"])
            result["ratio_p50_binding_vs_bare_connect"] = round(
                result["binding_p50_ms"] / result["bare_connect_query_p50_ms"], 2)
            result.update(await concurrent(web, gw + "/point", args.concurrent, db))
            result["pool_held"] = result["origin_connections_max"] <= args.pool_size
            return result


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench hyperdrive")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--inside", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=200)
    parser.add_argument("--pool-size", type=int, default=5)
    parser.add_argument("--sockets-per-namespace", type=int, default=0,
                        help="the gateway's bound (default: WDL_SOCKETS_PER_NAMESPACE or 64)")
    parser.add_argument("--workerd", default=os.environ.get("WORKERD_BIN"))
    args = parser.parse_args(argv)
    if args.sockets_per_namespace:
        os.environ["WDL_SOCKETS_PER_NAMESPACE"] = str(args.sockets_per_namespace)
    started = time.monotonic()
    result = asyncio.run(run(args))
    result["seconds"] = round(time.monotonic() - started, 1)
    return result
