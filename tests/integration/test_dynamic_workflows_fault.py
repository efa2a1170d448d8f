"""FAULT: SIGKILL the workflows engine while dynamic workflows run (issue 25).

The @cloudflare/dynamic-workflows dispatcher (tests/fixtures/dynamic_workflows, with a KV
namespace its tenants' step callbacks count their executions in) runs instances of both
tenants on the real servers and Kafka; the engine runs as its own process (`python -m
services.workflows`) and is SIGKILLed once every instance has recorded its first steps and
sleeps or waits for its event. A new engine takes the lease over; the events are sent;
every instance completes with the output Miniflare gives, and every step callback ran
exactly once (a step in flight at a kill may run again - at least once, docs/workflows.md -
which is why the kill lands between steps).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.integration.test_dynamic_workflows import WORKER, project
from tests.integration.test_workflows_fault import free_port, start_engine, until_leading
from tests.platform_stack import platform_stack
from tests.workflows.rig import TOKEN, EngineApi

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

N = 4  # instances per tenant


async def test_sigkill_engine_during_dynamic_workflows(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    directory = await asyncio.to_thread(project, tmp_path, True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                                  workflows_url=url) as stack:
            env = {**stack.backend_env, "WDL_GATEWAY_URL": stack.gateway,
                   "WDL_INTERNAL_TOKEN": TOKEN, "WDL_WORKFLOWS_PORT": str(port),
                   "WDL_WORKFLOWS_TTL_MS": "2000", "PYTHONPATH": str(ROOT)}
            log = tmp_path / "engine.log"
            procs.append(await start_engine(env, "engine-a", log))
            ns = unique_name("dwff")[:30].lower().replace("_", "-")
            await stack.wdl("ns", "create", ns)
            await stack.deploy(ns, directory)
            await until_leading(url)
            engine = EngineApi(url)
            async with httpx.AsyncClient(base_url=stack.gateway + f"/{WORKER}", timeout=60,
                                         headers={"host": f"{ns}.workers.local"}) as client:
                async def call(tenant: str, path: str, body: object = None) -> object:
                    h = {"x-tenant-id": tenant}
                    r = await (client.get(path, headers=h) if body is None else
                               client.post(path, headers=h, content=json.dumps(body)))
                    assert r.status_code == 200, r.text
                    return r.json()

                ids = {"t1": [f"o-{n}" for n in range(N)], "t2": [f"j-{n}" for n in range(N)]}
                for n in range(N):
                    await call("t1", "/create", {"id": f"o-{n}",
                                                 "params": {"order": f"A-{n}", "items": n + 1}})
                    await call("t2", "/create", {"id": f"j-{n}",
                                                 "params": {"numbers": [n, n + 1, n + 2]}})
                # Mid-run: every instance past its first steps, asleep or waiting.
                deadline = time.monotonic() + 60
                while True:
                    rows = await engine.instances(ns)
                    if len(rows) == 2 * N and all(r["status"] == "waiting"
                                                  for r in rows.values()):
                        break
                    assert time.monotonic() < deadline, rows
                    await asyncio.sleep(0.1)
                before = {i: await call(t, f"/executions?id={i}")
                          for t in ids for i in ids[t]}
                assert all(before[i] == {"load": 1} for i in ids["t1"]), before
                procs[0].send_signal(signal.SIGKILL)
                await procs[0].wait()
                procs.append(await start_engine(env, "engine-b", log))
                await until_leading(url)
                for i in ids["t1"]:
                    await call("t1", f"/event?id={i}",
                               {"type": "approve", "payload": {"price": 7, "by": "bob"}})
                for i in ids["t2"]:
                    await call("t2", f"/event?id={i}",
                               {"type": "go-ahead", "payload": {"prefix": "p"}})
                # Parallel steps (Promise.all in the child), on the new engine.
                ids["t3"] = [f"p-{n}" for n in range(N)]
                for i in ids["t3"]:
                    await call("t3", "/create", {"id": i, "params": {}})
                done: dict[str, object] = {}
                deadline = time.monotonic() + 90
                for t in ids:
                    for i in ids[t]:
                        while True:
                            st = await call(t, f"/status?id={i}")
                            assert isinstance(st, dict)
                            if st["status"] in ("complete", "errored", "terminated"):
                                done[i] = st
                                break
                            assert time.monotonic() < deadline, (i, st)
                            await asyncio.sleep(0.2)
                after = {i: await call(t, f"/executions?id={i}")
                         for t in ids for i in ids[t]}
            await engine.close()
            for n in range(N):
                assert done[f"o-{n}"] == {"status": "complete", "error": None, "output": {
                    "tenant": "t1", "order": f"A-{n}", "total": 7 * (n + 1),
                    "approvedBy": "bob"}}
                total = sum(k * k for k in (n, n + 1, n + 2))
                assert done[f"j-{n}"] == {"status": "complete", "error": None, "output": {
                    "tenant": "t2", "sum": total, "label": f"p-{total}", "steps": 4}}
                assert after[f"o-{n}"] == {"load": 1, "charge": 1}
                assert after[f"j-{n}"] == {f"square{k}": 1 for k in (n, n + 1, n + 2)} | {
                    "label": 1}
                assert done[f"p-{n}"] == {"status": "complete", "error": None,
                                          "output": {"tenant": "t3", "sum": 3}}
                assert after[f"p-{n}"] == {"left": 1, "right": 1}
            # The new engine really took over from the killed one (a new generation).
            text = log.read_text()
            assert "engine-b" in text or "generation 2" in text, text[-2000:]
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(p.wait(), 10)
                except TimeoutError:
                    p.kill()
