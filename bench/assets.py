"""`python -m bench assets`: a static asset through the gateway vs a hello-world tenant.

One run, on the embedded backends in a temporary directory, both deployed with the real
`wdl deploy` (as a user does):

* `assets_rps`: wrk through the gateway to a 4 KiB asset of an assets-only project;
* `worker_rps`: the same wrk to a hello-world tenant worker of the same namespace (the
  baseline: what the gateway does for any request that enters a tenant's isolate);
  measured in interleaved halves (worker, assets, worker, assets) so drift falls on both;
* `ratio` = assets_rps / worker_rps; goal >= 1.0 (an asset does not enter the tenant
  isolate);
* `assets_p50_ms` / `worker_p50_ms`: one request at a time with the same client,
  interleaved; `p50_over_worker_ms` = their difference; goal <= 0.3 ms.

Needs `wrk` (Debian: `apt-get install wrk`).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.dataplane import wrk
from bench.embedded import embedded, wrk_parser
from services.platform import Platform

TOKEN = "wdl_admin_bench_assets"
NS = "bench"
HOST = f"{NS}.workers.local"
ASSET_SIZE = 4096
WDL = str(Path(sys.executable).with_name("wdl"))


def projects(work: Path) -> tuple[Path, Path, bytes]:
    """(the hello-world worker, the assets-only site, the 4 KiB asset's bytes)."""
    hello = work / "hello"
    (hello / "src").mkdir(parents=True)
    (hello / "wrangler.toml").write_text(
        'name = "hello"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n')
    (hello / "src" / "index.js").write_text(
        "export default { async fetch() { return new Response('hello world\\n'); } };")
    site = work / "site"
    (site / "public").mkdir(parents=True)
    (site / "wrangler.jsonc").write_text(
        '{"name": "site", "compatibility_date": "2025-06-01", '
        '"assets": {"directory": "./public"}}\n')
    seed = hashlib.sha256(b"bench assets").hexdigest()
    content = (seed * (ASSET_SIZE // len(seed) + 1)).encode()[:ASSET_SIZE]
    (site / "public" / "four.txt").write_bytes(content)
    return hello, site, content


async def wdl(env: dict[str, str], *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(WDL, *args, env=env,
                                                stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"wdl {' '.join(args)} failed: {err.decode()}{out.decode()}")
    return out.decode()


async def p50s(web: httpx.AsyncClient, urls: dict[str, str], count: int) -> dict[str, float]:
    """Sequential requests, alternating between the urls; each one's median in ms."""
    times: dict[str, list[float]] = {name: [] for name in urls}
    for _ in range(count):
        for name, url in urls.items():
            t0 = time.perf_counter()
            (await web.get(url)).raise_for_status()
            times[name].append((time.perf_counter() - t0) * 1000)
    return {name: statistics.median(values) for name, values in times.items()}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wdl-bench-assets-") as tmp:
        work = Path(tmp)
        settings, options = embedded(work, TOKEN, args.workerd)
        hello, site, content = projects(work)
        async with Platform(settings, options) as platform, \
                httpx.AsyncClient(timeout=30, headers={"host": HOST}) as web:
            assert platform.gateway is not None and platform.api is not None
            env = {**{k: v for k, v in os.environ.items() if not k.startswith("WDL_")},
                   "WDL_CONTROL_URL": platform.api.url, "WDL_TOKEN": TOKEN,
                   "WDL_CONFIG": str(work / "none.toml")}
            await wdl(env, "ns", "create", NS)
            await wdl(env, "deploy", str(hello), "--ns", NS, "--no-bundle")
            await wdl(env, "deploy", str(site), "--ns", NS)
            gw = platform.gateway.url
            processes = platform.gateway.processes
            urls = {"worker": gw + "/hello/", "assets": gw + "/site/four.txt"}
            asset = await web.get(urls["assets"])
            if asset.status_code != 200 or asset.content != content:
                raise RuntimeError(f"the asset is not served: {asset.status_code} "
                                   f"{asset.text[:300]}")
            await p50s(web, urls, 50)  # warm isolates, caches and connections
            latency = await p50s(web, urls, args.samples)

            def wrk_at(url: str, seconds: int) -> Any:
                return wrk(url, HOST, seconds=seconds, connections=args.connections,
                           threads=args.threads)

            for url in urls.values():
                await wrk_at(url, 2)
            totals = {"worker": 0.0, "assets": 0.0}
            half = max(2, args.seconds // 2)
            for _ in range(2):
                for name, url in urls.items():
                    totals[name] += await wrk_at(url, half) / 2
    ratio = totals["assets"] / totals["worker"]
    over = latency["assets"] - latency["worker"]
    return {
        "assets_rps": round(totals["assets"], 1),
        "worker_rps": round(totals["worker"], 1),
        "ratio": round(ratio, 3),
        "ratio_goal_met": ratio >= 1.0,
        "assets_p50_ms": round(latency["assets"], 3),
        "worker_p50_ms": round(latency["worker"], 3),
        "p50_over_worker_ms": round(over, 3),
        "p50_goal_met": over <= 0.3,
        "asset_bytes": ASSET_SIZE,
        "gateway_processes": processes,
        "wrk": {"threads": args.threads, "connections": args.connections,
                "seconds": args.seconds},
        "samples": args.samples,
    }


def main(argv: list[str]) -> dict[str, Any]:
    parser = wrk_parser("python -m bench assets", samples=400)
    return asyncio.run(run(parser.parse_args(argv)))
