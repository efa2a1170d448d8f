"""`python -m bench loaders`: what a call to a tenant's dynamic Worker costs.

One tenant worker with a `worker_loader` binding and a service binding, deployed
with `wdl`'s API on a platform in this process (embedded control plane):

* `/direct` answers at once (the baseline); `/svc` makes one service-binding RPC
  call (a second isolate, the reference: also forwarded by the gateway);
  `/child-rpc` one RPC call to a loaded child (`LOADER.get(id).getEntrypoint("Rpc")`),
  `/child-fetch` one `fetch()` to a child's default export; `/cold` loads a new
  child (a fresh id each time, so callback + workerd load + first call).
* Per operation: `*_p50_ms` / `*_p99_ms` of the request through the gateway minus
  the baseline's p50, `*_inside_mean_ms` the mean of N sequential calls timed inside
  the isolate, `*_rps` with the same client and concurrency as `baseline_rps`.

No goal is set by the issue for these; the reference is the service binding
(`ratio_child_rpc_vs_svc` = child RPC rps / service binding rps).

Children at scale (issue 25): `scale_children` (10,000) distinct children, one per
customer, requested round-robin through one parent (`/scale?i=N`; one request at a
time by default, `--scale-concurrency`, so that a cold load is timed alone rather than
queued behind others in a single-threaded process), so with a resident budget far
below 10,000 every request evicts one child and loads another: `scale_rps` (and
`ratio_scale_vs_baseline`, against the baseline's sequential rate), `scale_p50_ms` /
`scale_p99_ms` through the gateway, `cold_load_p50_ms` (callback + load + first call,
timed inside the parent; goal <= 10 ms), `gateway_rss_mb` per workerd process at the
start, its peak while loading (sampled every 500 requests) and at the end (goal:
bounded, whatever the number of children: the peak must not grow with it),
`resident_budget` and `errors` (goal 0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

from bench.bindings import data_env, deploy, latencies, percentile, throughput
from services.dataplane.gateway import RecyclePolicy
from services.platform import Platform, PlatformOptions
from services.settings import Settings

TOKEN = "wdl_admin_bench"
NS = "bench"
HOST = f"{NS}.workers.local"

CHILD = """
import { WorkerEntrypoint } from "cloudflare:workers";
let n = 0;
export class Rpc extends WorkerEntrypoint { add(a, b) { return a + b; } hit() { return ++n; } }
export default { fetch() { return new Response("child"); } };
"""
TENANT = """
const CHILD = %s;
const N = 50;
function code() {
  return { compatibilityDate: "2025-11-17", mainModule: "c.js", modules: { "c.js": CHILD } };
}
async function timed(op) {
  const t0 = Date.now();
  for (let i = 0; i < N; i++) await op();
  return (Date.now() - t0) / N;
}
export default { async fetch(req, env) {
  const url = new URL(req.url);
  const child = env.LOADER.get("warm", code);
  if (url.pathname === "/direct") return new Response("x");
  if (url.pathname === "/svc") return new Response(String(await env.SVC.add(1, 2)));
  if (url.pathname === "/child-rpc") {
    return new Response(String(await child.getEntrypoint("Rpc").add(1, 2)));
  }
  if (url.pathname === "/child-fetch") return child.getEntrypoint().fetch("https://c/");
  if (url.pathname === "/cold") {
    const fresh = env.LOADER.get(url.searchParams.get("id"), code);
    return new Response(String(await fresh.getEntrypoint("Rpc").add(1, 2)));
  }
  if (url.pathname === "/scale") {
    const t0 = Date.now();
    const calls = await env.LOADER.get("customer-" + url.searchParams.get("i"), code)
      .getEntrypoint("Rpc").hit();
    return Response.json({ cold: calls === 1, ms: Date.now() - t0 });
  }
  if (url.pathname === "/inside") return Response.json({
    svc: await timed(() => env.SVC.add(1, 2)),
    child_rpc: await timed(() => child.getEntrypoint("Rpc").add(1, 2)),
    child_fetch: await timed(async () => (await child.getEntrypoint().fetch("https://c/")).text()),
  });
  return new Response("not found", { status: 404 });
} };
"""
ADDER = """
import { WorkerEntrypoint } from "cloudflare:workers";
export class Adder extends WorkerEntrypoint { add(a, b) { return a + b; } }
export default { fetch() { return new Response("adder"); } };
"""
OPS = {"baseline": "/direct", "svc": "/svc", "child_rpc": "/child-rpc",
       "child_fetch": "/child-fetch"}
COLD_SAMPLES = 40


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def scale(web: httpx.AsyncClient, gw: str, pids: list[int], children: int,
                concurrency: int) -> dict[str, Any]:
    """`children` distinct children round-robin through one parent."""
    start = {str(pid): round(rss_mb(pid), 1) for pid in pids}
    peak = dict(start)
    latency: list[float] = []
    cold: list[float] = []
    errors = 0
    colds = 0
    nxt = 0

    async def client() -> None:
        nonlocal nxt, errors, colds
        while nxt < children:
            i = nxt
            nxt += 1
            t0 = time.perf_counter()
            try:
                r = await web.get(f"{gw}/scale?i={i}")
                r.raise_for_status()
                body = r.json()
            except (httpx.HTTPError, ValueError):
                errors += 1
                continue
            latency.append((time.perf_counter() - t0) * 1000)
            if body["cold"]:
                colds += 1
                cold.append(float(body["ms"]))
            if i % 500 == 0:
                for pid in pids:
                    peak[str(pid)] = max(peak[str(pid)], round(rss_mb(pid), 1))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    end = {str(pid): round(rss_mb(pid), 1) for pid in pids}
    peak = {pid: max(mb, end[pid]) for pid, mb in peak.items()}
    return {"scale_children": children, "scale_seconds": round(seconds, 1),
            "scale_rps": round(len(latency) / seconds, 1),
            "scale_p50_ms": round(statistics.median(latency), 3),
            "scale_p99_ms": round(percentile(latency, 0.99), 3),
            "scale_cold_loads": colds,
            "cold_load_p50_ms": round(statistics.median(cold), 3) if cold else None,
            "cold_load_p99_ms": round(percentile(cold, 0.99), 3) if cold else None,
            "gateway_rss_mb": {"start": start, "peak": peak, "end": end},
            "errors": errors}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="wdl-bench-") as tmp:
        settings = Settings.from_env(data_env(Path(tmp)), embedded=True)
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
            await deploy(api, "adder", ADDER, [])
            await deploy(api, "app", TENANT % json.dumps(CHILD), [
                {"name": "LOADER", "kind": "worker_loader"},
                {"name": "SVC", "kind": "service", "target": "adder", "entrypoint": "Adder"},
            ])
            for path in OPS.values():
                await latencies(web, gw + path, 20)  # warm isolates (every process) and sockets
            result: dict[str, Any] = {"requests": args.requests,
                                      "concurrency": args.concurrency,
                                      "gateway_processes": platform.gateway.processes}
            samples = {op: await latencies(web, gw + path, args.requests)
                       for op, path in OPS.items()}
            base = statistics.median(samples["baseline"])
            result["baseline_p50_ms"] = round(base, 3)
            for op, values in samples.items():
                if op == "baseline":
                    continue
                result[f"{op}_p50_ms"] = round(statistics.median(values) - base, 3)
                result[f"{op}_p99_ms"] = round(percentile(values, 0.99) - base, 3)
            cold = [await latencies(web, gw + f"/cold?id={uuid.uuid4().hex}", 1)
                    for _ in range(COLD_SAMPLES)]
            flat = [c[0] for c in cold]
            result["cold_child_p50_ms"] = round(statistics.median(flat) - base, 3)
            result["cold_child_p99_ms"] = round(percentile(flat, 0.99) - base, 3)
            inside = (await web.get(gw + "/inside")).json()
            for op in ("svc", "child_rpc", "child_fetch"):
                result[f"{op}_inside_mean_ms"] = round(float(inside[op]), 3)
            for op, path in OPS.items():
                key = "baseline_rps" if op == "baseline" else f"{op}_rps"
                result[key] = round(await throughput(web, gw + path, args.seconds,
                                                     args.concurrency), 1)
            result["ratio_child_rpc_vs_svc"] = round(result["child_rpc_rps"]
                                                     / result["svc_rps"], 3)
            result["baseline_sequential_rps"] = round(
                1000 * len(samples["baseline"]) / sum(samples["baseline"]), 1)
            result["resident_budget"] = platform.gateway.options.loader_resident
            result["scale_concurrency"] = args.scale_concurrency
            result.update(await scale(web, gw, platform.gateway.pids, args.children,
                                      args.scale_concurrency))
            result["ratio_scale_vs_baseline"] = round(
                result["scale_rps"] / result["baseline_sequential_rps"], 3)
            return result


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench loaders")
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--children", type=int, default=10_000)
    parser.add_argument("--scale-concurrency", type=int, default=1)
    parser.add_argument("--workerd", default=os.environ.get("WORKERD_BIN"))
    return asyncio.run(run(parser.parse_args(argv)))
