"""Workers for Platforms on the real servers and real workerd (docs/platforms.md).

A dispatcher in namespace `plat` binds the dispatch namespace `users` (which granted it
every worker) with an outbound Worker `out` of `plat`: user workers are dispatched by
name (fetch and RPC) at their active version, a missing one gives Cloudflare's
"Worker not found" error, every fetch() of a user worker reaches the outbound Worker
with the dispatcher's parameters, `subRequests` is enforced and `cpuMs` refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.platform_stack import Stack, platform_stack

USER = """
import { WorkerEntrypoint } from "cloudflare:workers";
const VERSION = %s;
export default class extends WorkerEntrypoint {
  async fetch(req) {
    const u = new URL(req.url);
    const n = Number(u.searchParams.get("n") || "2");
    const sleep = Number(u.searchParams.get("sleep") || "0");
    if (sleep) await new Promise((r) => setTimeout(r, sleep));
    const seen = [];
    for (let i = 0; i < n; i++) {
      const base = u.searchParams.get("pass") ? "https://api.example.com/pass/"
        : "https://api.example.com/call/";
      try { seen.push(await (await fetch(base + i)).json()); }
      catch (e) { seen.push({ error: String(e.message || e) }); }
    }
    return Response.json({ user: VERSION, path: u.pathname, seen });
  }
  async hello(who) {
    const out = await (await fetch("https://api.example.com/rpc")).json();
    return { hi: who, by: VERSION, out };
  }
}
"""

OUTBOUND = """
export default { async fetch(req, env) {
  if (new URL(req.url).pathname.startsWith("/pass/")) {
    try { await fetch(req); return Response.json({ passed: true }); }
    catch (e) { return Response.json({ refused: String(e.message) }); }
  }
  return Response.json({ url: req.url, customer: env.customer ?? null,
    plan: env.plan ?? null, named: req.headers.get("x-wdl-request-id") !== null });
} };
"""

DISPATCHER = """
export default { async fetch(req, env) {
  const u = new URL(req.url);
  const name = u.searchParams.get("w");
  const mode = u.searchParams.get("mode") || "fetch";
  const options = { outbound: { customer: "cust-" + name } };
  const sub = u.searchParams.get("sub");
  if (sub) options.limits = { subRequests: Number(sub) };
  const wall = u.searchParams.get("wall");
  if (wall) options.limits = { wallMs: Number(wall) };
  try {
    if (mode === "cpu") {
      env.DISPATCHER.get(name, {}, { limits: { cpuMs: 10 } });
      return new Response("cpuMs accepted");
    }
    if (mode === "smuggle") {
      await env.DISPATCHER.get(name, {}, { outbound: { customer: "c", secret: "s" } })
        .fetch("https://user/");
      return new Response("smuggled");
    }
    const user = env.DISPATCHER.get(name, {}, options);
    if (mode === "rpc") return Response.json(await user.hello("bob"));
    return await user.fetch(new Request("https://" + name + ".example/path?n=" +
      (u.searchParams.get("n") || "2") + "&sleep=" + (u.searchParams.get("sleep") || "0") +
      "&pass=" + (u.searchParams.get("pass") || "")));
  } catch (e) {
    if (e.message.startsWith("Worker not found")) {
      return new Response("404: " + e.message, { status: 404 });
    }
    return new Response(e.name + ": " + e.message, { status: 500 });
  }
} };
"""

BINDING = """
[[dispatch_namespaces]]
binding = "DISPATCHER"
namespace = "users"
outbound = { service = "out", parameters = ["customer", "plan"] }
"""


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        yield stack


async def get(stack: Stack, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=20) as client:
        return await client.get(stack.gateway + path, headers={"host": "plat.workers.local"})


def dispatcher(stack: Stack) -> Path:
    project = stack.project("dispatch", DISPATCHER)
    toml = project / "wrangler.toml"
    toml.write_text(toml.read_text() + BINDING)
    return project


async def platform(stack: Stack) -> None:
    await stack.wdl("ns", "create", "plat")
    await stack.wdl("ns", "create", "users")
    await stack.wdl("ns", "grant", "plat", "--ns", "users")
    await stack.deploy("plat", stack.project("out", OUTBOUND))
    await stack.wdl("deploy", str(stack.project("alice", USER % json.dumps("a1"))),
                    "--dispatch-namespace", "users", "--json")
    await stack.deploy("plat", dispatcher(stack))


async def test_dispatch_by_name_through_the_outbound_worker(stack: Stack) -> None:
    await platform(stack)
    r = await get(stack, "/dispatch/?w=alice")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user"] == "a1" and body["path"] == "/path"
    # Every fetch() of the user worker reached the outbound Worker, with the parameters.
    assert body["seen"] == [
        {"url": f"https://api.example.com/call/{i}", "customer": "cust-alice", "plan": None,
         "named": True} for i in range(2)]
    # RPC on the user worker's default entrypoint, its fetches intercepted too.
    r = await get(stack, "/dispatch/?w=alice&mode=rpc")
    assert r.status_code == 200, r.text
    assert r.json() == {"hi": "bob", "by": "a1", "out": {
        "url": "https://api.example.com/rpc", "customer": "cust-alice", "plan": None,
        "named": True}}
    # The active version, resolved at call time.
    await stack.wdl("deploy", str(stack.project("alice", USER % json.dumps("a2"))),
                    "--dispatch-namespace", "users", "--json")
    assert (await get(stack, "/dispatch/?w=alice")).json()["user"] == "a2"


async def test_missing_worker_limits_and_refusals(stack: Stack) -> None:
    await platform(stack)
    r = await get(stack, "/dispatch/?w=nobody")
    assert r.status_code == 404 and "Worker not found" in r.text
    r = await get(stack, "/dispatch/?w=alice&mode=cpu")
    assert r.status_code == 500 and r.text.startswith("TypeError: ") and "cpuMs" in r.text
    r = await get(stack, "/dispatch/?w=alice&mode=smuggle")
    assert r.status_code == 500 and "secret" in r.text and "not a parameter" in r.text
    # subRequests: the third fetch is refused, the first two reach the outbound.
    r = await get(stack, "/dispatch/?w=alice&n=3&sub=2")
    seen = r.json()["seen"]
    assert [s.get("customer") for s in seen[:2]] == ["cust-alice", "cust-alice"]
    assert "Too many subrequests" in seen[2]["error"]
    # The outbound Worker's own fetch() goes through ITS namespace's egress policy.
    await stack.wdl("ns", "egress", "set", "deny", "--ns", "plat")
    seen = (await get(stack, "/dispatch/?w=alice&n=1&pass=1")).json()["seen"]
    assert "egress policy of namespace plat refused" in seen[0]["refused"], seen
    # wallMs (a WDL extension): the call fails once the user worker runs past it.
    r = await get(stack, "/dispatch/?w=alice&sleep=3000&wall=300")
    assert r.status_code == 500 and "exceeded its wall-time limit of 300 ms" in r.text, r.text
    assert (await get(stack, "/dispatch/?w=alice&sleep=10&wall=5000")).status_code == 200
    # A user worker is not served on the namespace URL (no workers.dev for user workers).
    async with httpx.AsyncClient(timeout=20) as client:
        r = await client.get(stack.gateway + "/alice/", headers={"host": "users.workers.local"})
    assert r.status_code == 404 and r.json()["error"] == "workers_dev_disabled"
