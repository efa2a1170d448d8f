"""Issue 13's "done when": one wrangler project with a queue producer, a consumer with
retries and a dead-letter queue, a workflow using step.do, step.sleep and
step.waitForEvent, and a LOADER child (examples/orders) deploys unchanged and behaves
as under Miniflare, on the real servers (Kafka message and workflow logs) and on
`wdl dev`.

The scenario (the same as tests/miniflare/orders_reference.mjs): three orders are
queued; the consumer starts a workflow for each good one and retries the bad one
until it is dead-lettered (the DLQ's consumer records it in KV); each workflow prices
its order in a Dynamic Worker, sleeps, waits for its approval event and ships.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import platform_stack

pytestmark = pytest.mark.integration

PROJECT = ROOT / "examples" / "orders"
ORDERS = [{"id": "a", "amount": 10, "rule": "double"}, {"id": "b", "amount": 7, "rule": "triple"},
          {"id": "c", "amount": 1, "rule": "double", "bad": True}]
EXPECTED = {"a": {"status": "complete", "output": {"id": "a", "price": 20, "by": "ops"}},
            "b": {"status": "complete", "output": {"id": "b", "price": 21, "by": "ops"}},
            "dead": ["c"]}


@pytest.fixture(scope="module")
def miniflare_outcome() -> dict[str, Any]:
    out = subprocess.run(["node", str(ROOT / "tests/miniflare/orders_reference.mjs")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    outcome: dict[str, Any] = json.loads(out.stdout)
    return outcome


async def scenario(web: httpx.AsyncClient) -> dict[str, Any]:
    async def until(path: str, done: Callable[[Any], bool], method: str = "GET") -> Any:
        deadline = time.monotonic() + 60
        while True:
            got = (await web.request(method, path)).json()
            if done(got) or time.monotonic() > deadline:
                return got
            await asyncio.sleep(0.2)

    for order in ORDERS:
        r = await web.post("/orders/order", json=order)
        assert r.status_code == 200, r.text
    out: dict[str, Any] = {}
    for oid in ("a", "b"):
        await until(f"/orders/status?id={oid}", lambda s: s["status"] != "unknown")
        r = await web.post(f"/orders/approve?id={oid}")
        assert r.status_code == 200, r.text
    for oid in ("a", "b"):
        out[oid] = await until(f"/orders/status?id={oid}", lambda s: s["status"] == "complete")
    out["dead"] = await until("/orders/dead", lambda d: len(d) == 1)
    return out


async def test_orders_on_the_real_servers(services: Endpoints, fresh_database: str,
                                          unique_name: Callable[[str], str], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          miniflare_outcome: dict[str, Any]) -> None:
    monkeypatch.delenv("WDL_WORKFLOW_LOG", raising=False)
    monkeypatch.delenv("WDL_QUEUE_LOG", raising=False)
    components = frozenset({"api", "projector", "state", "data", "gateway", "queues",
                            "workflows"})
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=components) as stack:
        ns = unique_name("ord")[:30].lower().replace("_", "-")
        await stack.wdl("ns", "create", ns)
        await stack.deploy(ns, PROJECT)
        workflows = stack.platform.workflows
        assert workflows is not None and await workflows.leading(20)
        async with httpx.AsyncClient(base_url=stack.gateway, timeout=30,
                                     headers={"host": f"{ns}.workers.local"}) as web:
            ours = await scenario(web)
        status = json.loads(await stack.wdl("workflows", "status", "fulfil", "a", "--ns", ns,
                                            "--json"))
    assert ours == miniflare_outcome == EXPECTED
    assert status["status"] == "complete"



async def test_orders_on_wdl_dev(dev: Dev, miniflare_outcome: dict[str, Any]) -> None:
    dev.start()
    dev.cli("ns", "create", "demo")
    dev.cli("deploy", str(PROJECT), "--ns", "demo")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{dev.gateway_port}", timeout=30,
                                 headers={"host": "demo.workers.local"}) as web:
        ours = await scenario(web)
    assert ours == miniflare_outcome == EXPECTED
    assert dev.interrupt() == 0
