"""`python -m bench bindings`: what a binding call costs inside a tenant, against a var.

One tenant worker, deployed with `wdl`'s API on a platform in this process
(embedded control plane; KV on Redis and R2 on S3 when REDIS_URL /
S3_ENDPOINT_URL are set, as `make bench` sets them, else SQLite and a
directory), with a KV namespace, an R2 bucket and a service binding:

* `/var` answers from a var (the baseline); `/kv-get` reads a warm key, `/kv-put`
  writes one, `/r2-get` reads a 1 KiB object, `/svc` makes one service-binding
  RPC call to a second worker.
* Per operation: `*_p50_ms` / `*_p99_ms` of the request through the gateway
  minus the baseline's p50 (what the operation adds), `*_inside_mean_ms` the
  mean of N sequential operations timed inside the isolate (workerd's clock
  only advances on I/O, so one operation alone cannot be timed there), and
  `*_rps` with the same client and concurrency as `baseline_rps`.

Goals (docs/dataplane.md): KV get p50 <= 1 ms; a service-binding call adds <= 0.3 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from services.dataplane.gateway import RecyclePolicy
from services.platform import Platform, PlatformOptions
from services.settings import Settings

TOKEN = "wdl_admin_bench"
NS = "bench"
HOST = f"{NS}.workers.local"

TENANT = """
const N = 50;
async function timed(op) {
  const t0 = Date.now();
  for (let i = 0; i < N; i++) await op();
  return (Date.now() - t0) / N;
}
export default { async fetch(req, env) {
  const path = new URL(req.url).pathname;
  if (path === "/var") return new Response(env.GREETING);
  if (path === "/kv-get") return new Response(await env.KV.get("warm"));
  if (path === "/kv-put") { await env.KV.put("k" + (Math.random() * 64 | 0), "value");
                            return new Response("ok"); }
  if (path === "/r2-get") return new Response((await env.R2.get("one-kib")).body);
  if (path === "/svc") return new Response(String(await env.SVC.add(1, 2)));
  if (path === "/setup") {
    await env.KV.put("warm", "x".repeat(100));
    await env.R2.put("one-kib", "y".repeat(1024));
    return new Response("ok");
  }
  if (path === "/inside") return Response.json({
    kv_get: await timed(() => env.KV.get("warm")),
    kv_put: await timed(() => env.KV.put("inside", "v")),
    r2_get: await timed(async () => (await env.R2.get("one-kib")).arrayBuffer()),
    svc: await timed(() => env.SVC.add(1, 2)),
    var: await timed(async () => env.GREETING),
  });
  return new Response("not found", { status: 404 });
} };
"""
ADDER = """
import { WorkerEntrypoint } from "cloudflare:workers";
export class Adder extends WorkerEntrypoint { add(a, b) { return a + b; } }
export default { fetch() { return new Response("adder"); } };
"""
OPS = {"baseline": "/var", "kv_get": "/kv-get", "kv_put": "/kv-put", "r2_get": "/r2-get",
       "svc": "/svc"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def deploy(client: httpx.AsyncClient, worker: str, source: str,
                 bindings: list[dict[str, str]], vars_: dict[str, str] | None = None) -> None:
    body = {"main_module": "index.js", "compatibility_date": "2025-11-17",
            "modules": [{"name": "index.js", "type": "esm",
                         "content_b64": base64.b64encode(source.encode()).decode()}],
            "vars": vars_ or {}, "bindings": bindings}
    r = await client.post(f"/v1/namespaces/{NS}/workers/{worker}/versions", json=body,
                          params={"promote": "true"})
    r.raise_for_status()


async def latencies(web: httpx.AsyncClient, url: str, count: int) -> list[float]:
    out = []
    for _ in range(count):
        t0 = time.perf_counter()
        r = await web.get(url)
        out.append((time.perf_counter() - t0) * 1000)
        r.raise_for_status()
    return out


async def throughput(web: httpx.AsyncClient, url: str, seconds: float, concurrency: int
                     ) -> float:
    done = 0
    deadline = time.perf_counter() + seconds

    async def loop() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            (await web.get(url)).raise_for_status()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop() for _ in range(concurrency)))
    return done / (time.perf_counter() - started)


def data_env(work: Path) -> dict[str, str]:
    env = {"WDL_DATA_DIR": str(work / "data"), "WDL_ADMIN_TOKEN": TOKEN}
    run = uuid.uuid4().hex[:8]
    if os.environ.get("REDIS_URL"):
        env["WDL_KV_URL"] = f"{os.environ['REDIS_URL']}?prefix=benchkv-{run}:"
    if os.environ.get("S3_ENDPOINT_URL"):
        env["WDL_R2_URL"] = f"s3://bench-r2-{run}"
    return env


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wdl-bench-") as tmp:
        env = data_env(Path(tmp))
        settings = Settings.from_env(env, embedded=True)
        options = PlatformOptions(api_port=0, gateway_port=0, state_port=0, data_port=0,
                                  scheduler_health_port=0, workerd_bin=args.workerd,
                                  recycle=RecyclePolicy(interval=0))
        async with Platform(settings, options) as platform, httpx.AsyncClient(
                base_url=platform.api.url if platform.api else "", timeout=30,
                headers={"authorization": f"Bearer {TOKEN}"}) as api, \
                httpx.AsyncClient(timeout=30, headers={"host": HOST}) as web:
            assert platform.gateway is not None
            gw = platform.gateway.url + "/app"
            (await api.post("/v1/namespaces", json={"name": NS})).raise_for_status()
            (await api.post(f"/v1/namespaces/{NS}/kv", json={"name": "bench"})
             ).raise_for_status()
            (await api.post(f"/v1/namespaces/{NS}/r2", json={"name": "bench-bucket"})
             ).raise_for_status()
            await deploy(api, "adder", ADDER, [])
            await deploy(api, "app", TENANT, [
                {"name": "KV", "kind": "kv", "target": "bench"},
                {"name": "R2", "kind": "r2", "target": "bench-bucket"},
                {"name": "SVC", "kind": "service", "target": "adder", "entrypoint": "Adder"},
            ], {"GREETING": "hello"})
            (await web.get(gw + "/setup")).raise_for_status()
            for path in OPS.values():
                await latencies(web, gw + path, 20)  # warm isolates and connections
            result: dict[str, Any] = {"kv_backend": settings.kv_url.split(":", 1)[0],
                                      "r2_backend": settings.r2_url.split(":", 1)[0],
                                      "requests": args.requests,
                                      "concurrency": args.concurrency}
            samples = {op: await latencies(web, gw + path, args.requests)
                       for op, path in OPS.items()}
            base = statistics.median(samples["baseline"])
            result["baseline_p50_ms"] = round(base, 3)
            for op, values in samples.items():
                if op == "baseline":
                    continue
                result[f"{op}_p50_ms"] = round(statistics.median(values) - base, 3)
                result[f"{op}_p99_ms"] = round(percentile(values, 0.99) - base, 3)
            inside = (await web.get(gw + "/inside")).json()
            for op in ("kv_get", "kv_put", "r2_get", "svc"):
                result[f"{op}_inside_mean_ms"] = round(float(inside[op]), 3)
            for op, path in OPS.items():
                key = "baseline_rps" if op == "baseline" else f"{op}_rps"
                result[key] = round(await throughput(web, gw + path, args.seconds,
                                                     args.concurrency), 1)
            result["ratio_kv_get"] = round(result["kv_get_rps"] / result["baseline_rps"], 3)
            result["ratio_svc"] = round(result["svc_rps"] / result["baseline_rps"], 3)
            return result


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench bindings")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--workerd", default=os.environ.get("WORKERD_BIN"))
    return asyncio.run(run(parser.parse_args(argv)))
