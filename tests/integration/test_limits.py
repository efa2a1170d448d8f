"""Per-request budgets of a namespace (wall time, subrequests) on real workerd and servers."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest

from tests.platform_stack import ADMIN, Stack

# Fetches ?n= times from ?url=, reports how many succeeded and the first error;
# ?forge=1 sends a made-up request name; ?later=1 fetches from waitUntil after the response.
FETCHES = """
export default {
  async fetch(request, env, ctx) {
    const u = new URL(request.url);
    const n = Number(u.searchParams.get("n") || 1), target = u.searchParams.get("url");
    if (u.searchParams.get("sleep")) {
      await new Promise((r) => setTimeout(r, Number(u.searchParams.get("sleep"))));
      return new Response("slept");
    }
    let ok = 0, error = "";
    for (let i = 0; i < n; i++) {
      try {
        const init = u.searchParams.get("forge")
          ? { headers: { "x-wdl-request-id": "00000000-0000-4000-8000-000000000000" } } : {};
        const r = await fetch(target, init);
        await r.text();
        ok++;
      } catch (e) { error = error || String(e.message); }
    }
    return Response.json({ ok, error, seen: request.headers.has("x-wdl-request-id") });
  },
};
"""


@pytest.fixture
def stack(loopback_stack: Stack) -> Stack:
    return loopback_stack  # the budgets are spent on fetches to a loopback server


async def get(stack: Stack, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.get(stack.gateway + path, headers={"host": "acme.workers.local"})


async def test_subrequest_and_wall_budgets(stack: Stack) -> None:
    hits: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read(4096)
        hits.append(request)
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    target = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/x"
    async with server:
        await stack.wdl("ns", "create", "acme")
        await stack.deploy("acme", stack.project("f", FETCHES))
        shown = json.loads(await stack.wdl("ns", "limits", "show", "--ns", "acme", "--json"))
        assert shown == {"wall_ms": 0, "subrequests": 1000, "workflow_slots": 0,
                         "queue_batches": 0, "cron_runs": 0, "tails": 0,
                         "hyperdrive_connections": 0, "set": False}
        body = (await get(stack, f"/f/?n=5&url={target}")).json()
        assert body["ok"] == 5 and body["error"] == ""
        # The request's name never reaches the destination.
        assert hits and not any(b"x-wdl-request-id" in h.lower() for h in hits)

        await stack.wdl("ns", "limits", "set", "--ns", "acme", "--subrequests", "3",
                        "--wall-ms", "500")
        body = (await get(stack, f"/f/?n=5&url={target}")).json()
        assert body["ok"] == 3 and body["error"] == "Too many subrequests."
        # Each request has its own budget.
        assert (await get(stack, f"/f/?n=2&url={target}")).json()["ok"] == 2
        # A made-up name does not escape the budget: the platform's name replaces it.
        forged = (await get(stack, f"/f/?n=5&forge=1&url={target}")).json()
        assert forged["ok"] == 3 and forged["error"] == "Too many subrequests."

        r = await get(stack, "/f/?sleep=3000")
        assert r.status_code == 503 and r.json()["error"] == "wall_time_exceeded"
        assert "500 ms" in r.json()["message"]
        assert (await get(stack, "/f/?sleep=10")).text == "slept"

        # A share set alone keeps the budgets set before it.
        await stack.wdl("ns", "limits", "set", "--ns", "acme", "--tails", "2")
        shown = json.loads(await stack.wdl("ns", "limits", "show", "--ns", "acme", "--json"))
        assert (shown["tails"], shown["subrequests"], shown["wall_ms"]) == (2, 3, 500)
        await stack.wdl("ns", "limits", "set", "--ns", "acme", "--subrequests", "0",
                        "--wall-ms", "0", "--tails", "0")
        shown = json.loads(await stack.wdl("ns", "limits", "show", "--ns", "acme", "--json"))
        assert shown["set"] is False and shown["tails"] == 0


async def test_limits_are_validated_and_admin_only(stack: Stack) -> None:
    await stack.wdl("ns", "create", "acme")
    async with httpx.AsyncClient(base_url=stack.api, timeout=10,
                                 headers={"authorization": f"Bearer {ADMIN}"}) as api:
        for bad in ({"subrequests": -1}, {"wall_ms": 10**9}, {"cpu_ms": 5}, {"tails": 5000},
                    {"workflow_slots": -1}):
            r = await api.put("/v1/namespaces/acme/limits", json=bad)
            assert r.status_code == 422, (bad, r.text)
        issued = await api.post("/v1/tokens", json={"role": "deployer", "namespaces": ["acme"],
                                                    "label": "t"})
        issued.raise_for_status()
        token = issued.json()["token"]
        r = await api.put("/v1/namespaces/acme/limits", json={"subrequests": 5},
                          headers={"authorization": f"Bearer {token}"})
        assert r.status_code == 403
        assert (await api.get("/v1/namespaces/acme/limits")).json()["set"] is False
        audit = (await api.get("/v1/audit", params={"namespace": "acme",
                                                    "type": "namespace.limits_set"})).json()
        assert audit["items"] == []
