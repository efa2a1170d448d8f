"""The overhead of an empty `step.do` on the Workflows engine (`python -m bench workflows`).

One platform in this process (embedded control plane; the workflow log on Kafka
when KAFKA_BOOTSTRAP_SERVERS is set, as `make bench` sets it, else SQLite). A
workflow runs `STEPS` empty steps (`step.do(name, async () => null)`); each
instance runs alone, so nothing queues:

* `step_do_p50_ms` / `step_do_p99_ms`: time between consecutive recorded steps
  of an instance (from the log's record times, ms resolution): one engine
  invocation through the gateway, the replay of the steps before it, the
  record's durable append.
* `step_do_mean_ms`: (create -> complete of a `STEPS`-step instance minus that of
  a zero-step instance) / `STEPS`, timed by the client.
* `fetch_p50_ms`: a plain request to the same worker through the gateway (the
  invocation floor), for comparison.

`bench/queues.py` calls `measure()` for its `step_do_p50_ms` line.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
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
NS = "benchwf"
HOST = f"{NS}.workers.local"

TENANT = """
import { WorkflowEntrypoint } from "cloudflare:workers";
export class Empty extends WorkflowEntrypoint {
  async run(event, step) {
    for (let i = 0; i < event.payload.steps; i++) await step.do("s" + i, async () => null);
    return event.payload.steps;
  }
}
export default { async fetch(req, env) {
  const q = new URL(req.url).searchParams;
  if (q.has("steps")) {
    const inst = await env.FLOW.create({ params: { steps: Number(q.get("steps")) } });
    return Response.json({ id: inst.id });
  }
  if (q.has("id")) return Response.json(await (await env.FLOW.get(q.get("id"))).status());
  return new Response("ok");
} };
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def _run_instance(web: httpx.AsyncClient, url: str, steps: int) -> tuple[str, float]:
    t0 = time.perf_counter()
    r = await web.get(url, params={"steps": steps})
    r.raise_for_status()
    iid = r.json()["id"]
    deadline = t0 + 60
    while True:
        st = (await web.get(url, params={"id": iid})).json()
        if st["status"] == "complete":
            return iid, (time.perf_counter() - t0) * 1000
        if st["status"] == "errored" or time.perf_counter() > deadline:
            raise RuntimeError(f"instance {iid}: {st}")
        await asyncio.sleep(0.002)


async def measure(steps: int = 20, instances: int = 10,
                  workerd: str | None = None) -> dict[str, Any]:
    """Run the benchmark on a platform of its own; returns its results."""
    with tempfile.TemporaryDirectory(prefix="wdl-bench-wf-") as tmp:
        env = {"WDL_DATA_DIR": str(Path(tmp) / "data"), "WDL_ADMIN_TOKEN": TOKEN}
        saved = os.environ.get("WDL_WORKFLOW_LOG")
        if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and not saved:
            os.environ["WDL_WORKFLOW_LOG"] = (f"kafka://{os.environ['KAFKA_BOOTSTRAP_SERVERS']}"
                                              f"?topic=bench-wf-{uuid.uuid4().hex[:8]}")
        log_kind = os.environ.get("WDL_WORKFLOW_LOG", "sqlite").split(":", 1)[0]
        try:
            settings = Settings.from_env(env, embedded=True)
            options = PlatformOptions(api_port=0, gateway_port=0, state_port=0, data_port=0,
                                      scheduler_health_port=0, workerd_bin=workerd,
                                      recycle=RecyclePolicy(interval=0))
            async with Platform(settings, options) as platform, httpx.AsyncClient(
                    base_url=platform.api.url if platform.api else "", timeout=30,
                    headers={"authorization": f"Bearer {TOKEN}"}) as api, \
                    httpx.AsyncClient(timeout=30, headers={"host": HOST}) as web:
                assert platform.gateway is not None and platform.workflows is not None
                assert await platform.workflows.leading(30)
                (await api.post("/v1/namespaces", json={"name": NS})).raise_for_status()
                body = {"main_module": "index.js", "compatibility_date": "2025-11-17",
                        "modules": [{"name": "index.js", "type": "esm", "content_b64":
                                     base64.b64encode(TENANT.encode()).decode()}],
                        "bindings": [{"name": "FLOW", "kind": "workflow", "target": "empty",
                                      "entrypoint": "Empty"}]}
                (await api.post(f"/v1/namespaces/{NS}/workers/app/versions", json=body,
                                params={"promote": "true"})).raise_for_status()
                url = platform.gateway.url + "/app/"
                fetches = []
                for _ in range(200):
                    t0 = time.perf_counter()
                    (await web.get(url)).raise_for_status()
                    fetches.append((time.perf_counter() - t0) * 1000)
                await _run_instance(web, url, 2)  # warm
                zero = [(await _run_instance(web, url, 0))[1] for _ in range(instances)]
                full = [await _run_instance(web, url, steps) for _ in range(instances)]
                engine = platform.workflows.engine
                assert engine is not None
                records = await engine.store.load()
            deltas: list[float] = []
            ids = {iid for iid, _ in full}
            by_instance: dict[str, list[int]] = {}
            for r in records:
                iid = r.instance.rsplit("/", 1)[1]
                if iid in ids and r.type == "step_succeeded":
                    by_instance.setdefault(iid, []).append(r.at)
            for times in by_instance.values():
                deltas += [float(b - a) for a, b in itertools.pairwise(times)]
            mean = (statistics.median([ms for _, ms in full]) - statistics.median(zero)) / steps
            return {"workflow_log": log_kind, "steps": steps, "instances": instances,
                    "step_do_p50_ms": round(statistics.median(deltas), 3),
                    "step_do_p99_ms": round(percentile(deltas, 0.99), 3),
                    "step_do_mean_ms": round(mean, 3),
                    "zero_step_instance_p50_ms": round(statistics.median(zero), 3),
                    "fetch_p50_ms": round(statistics.median(fetches), 3)}
        finally:
            if saved is None:
                os.environ.pop("WDL_WORKFLOW_LOG", None)
