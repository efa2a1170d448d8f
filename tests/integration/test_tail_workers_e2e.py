"""Tail Workers end to end on the real servers (Kafka, Redis, PostgreSQL, S3, workerd)
with the real `wdl deploy`: a producer's `tail_consumers` feeds a tail worker's
tail(events) with Cloudflare's TraceItems; the tail worker writes what it got into
KV and the test reads it back. No loops: a tail worker tailing itself, or two tailing
each other, do not amplify. A consumer deployed after its producer starts getting
events then; what it missed is counted as dropped."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_tail_e2e import metric, metrics_until
from tests.platform_stack import WDL, Stack

pytestmark = pytest.mark.integration

PRODUCER = """
export default { async fetch(req) {
  const u = new URL(req.url);
  console.log("hello-line", { n: 1 });
  console.warn("careful");
  if (u.pathname === "/boom") throw new TypeError("kaboom-from-producer");
  return new Response("ok " + u.pathname, { status: 201 });
} };
"""

# Writes each event it gets under its own key (receiver:producer:n) and answers with
# everything it stored. `WHO` names the receiver, so workers may share one KV.
TAIL = """
let n = 0;
export default {
  async tail(events, env, ctx) {
    for (const e of events) {
      await env.LOG.put(`%(who)s:${e.scriptName}:${Date.now()}:${n++}:${crypto.randomUUID()}`,
                        JSON.stringify(e));
    }
  },
  async fetch(req, env) {
    const u = new URL(req.url);
    if (u.pathname === "/dump") {
      const keys = (await env.LOG.list({ prefix: u.searchParams.get("prefix") || "" })).keys;
      const out = [];
      for (const k of keys) out.push({ key: k.name, event: JSON.parse(await env.LOG.get(k.name)) });
      return Response.json(out);
    }
    console.log("tail worker fetch", u.pathname);
    return new Response("tail worker " + u.pathname);
  },
};
"""


def project(stack: Stack, name: str, js: str, toml: str = "") -> Path:
    directory = stack.tmp / f"{name}-{abs(hash((js, toml))) % 10**8}"
    (directory / "src").mkdir(parents=True, exist_ok=True)
    (directory / "wrangler.toml").write_text(
        f'name = "{name}"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n' + toml)
    (directory / "src" / "index.js").write_text(js)
    return directory


def consumers(*names: str) -> str:
    return "tail_consumers = [" + ", ".join(f'{{ service = "{n}" }}' for n in names) + "]\n"


KV = '\n[[kv_namespaces]]\nbinding = "LOG"\nid = "{kv}"\n'


async def deploy(stack: Stack, ns: str, path: Path) -> dict[str, Any]:
    out = await stack.wdl("deploy", str(path), "--ns", ns, "--json")
    doc: dict[str, Any] = json.loads(out)
    return doc


async def refused(stack: Stack, *args: str) -> str:
    """`wdl` that must fail: its stderr and stdout."""
    proc = await asyncio.create_subprocess_exec(
        WDL, *args, env=stack.env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode != 0, out.decode()
    return " ".join((err.decode() + out.decode()).split())  # as one line (rich wraps)


async def get(stack: Stack, ns: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.get(stack.gateway + path, headers={"host": f"{ns}.workers.local"})


async def dump(stack: Stack, ns: str, worker: str, prefix: str = "") -> list[dict[str, Any]]:
    r = await get(stack, ns, f"/{worker}/dump?prefix={prefix}")
    assert r.status_code == 200, r.text
    rows: list[dict[str, Any]] = r.json()
    return rows


async def dump_until(stack: Stack, ns: str, worker: str, check: Callable[[list[Any]], bool],
                     prefix: str = "", timeout: float = 20.0) -> list[dict[str, Any]]:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        rows = await dump(stack, ns, worker, prefix)
        if check(rows) or asyncio.get_running_loop().time() > deadline:
            return rows
        await asyncio.sleep(0.2)


@pytest.fixture
def stack(loopback_stack: Stack) -> Stack:
    return loopback_stack


async def test_a_tail_worker_gets_trace_items_of_its_producer(
        stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("tw")
    await stack.wdl("ns", "create", ns)
    await deploy(stack, ns, project(stack, "tw", TAIL % {"who": "tw"}, KV.format(kv="twlog")))
    uploaded = await deploy(stack, ns, project(stack, "app", PRODUCER, consumers("tw")))
    assert uploaded["warnings"] == []
    version = uploaded["version_id"]

    assert (await get(stack, ns, "/app/hello?q=1")).status_code == 201
    assert (await get(stack, ns, "/app/boom")).status_code == 500
    rows = await dump_until(stack, ns, "tw", lambda r: len(r) >= 2, prefix="tw:app:")
    events = sorted((r["event"] for r in rows), key=lambda e: e["eventTimestamp"])
    assert len(events) == 2, rows
    hello, boom = events
    assert hello["scriptName"] == "app" and hello["scriptVersion"] == {"id": version}
    assert hello["outcome"] == "ok"
    request = hello["event"]["request"]
    # The URL the producer saw (its namespace host; the worker prefix is routing).
    assert request["url"].endswith(".workers.local/hello?q=1") and request["method"] == "GET"
    assert isinstance(request["headers"], dict) and "host" in request["headers"]
    assert hello["event"]["response"] == {"status": 201}
    assert [(log["level"], log["message"]) for log in hello["logs"]] == [
        ("log", ["hello-line", {"n": 1}]), ("warn", ["careful"])]
    assert all(isinstance(log["timestamp"], int) for log in hello["logs"])
    assert hello["exceptions"] == [] and hello["diagnosticsChannelEvents"] == []
    assert isinstance(hello["eventTimestamp"], int)

    assert boom["outcome"] == "exception" and "response" not in boom["event"]
    (exc,) = boom["exceptions"]
    assert (exc["name"], exc["message"]) == ("TypeError", "kaboom-from-producer")
    assert isinstance(exc["timestamp"], int)

    # The tail worker's own fetches are not fed to it (it does not name itself).
    await asyncio.sleep(1.5)
    assert len(await dump(stack, ns, "tw")) == 2

    data = stack.platform.data
    assert data is not None
    text = await metrics_until(data.url, lambda t: metric(
        t, "wdl_tail_consumer_events_delivered_total", default=0) >= 2)
    assert metric(text, "wdl_tail_consumer_events_delivered_total") == 2


async def test_tail_workers_never_loop(stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("tl")
    await stack.wdl("ns", "create", ns)
    kv = KV.format(kv="loops")
    # a and b tail each other (a is deployed first: b does not exist yet, a warning);
    # selfie tails itself.
    first = await deploy(stack, ns, project(stack, "loop-a", TAIL % {"who": "loop-a"},
                                            consumers("loop-b") + kv))
    assert any("'loop-b' has no active version" in w for w in first["warnings"]), first
    await deploy(stack, ns, project(stack, "loop-b", TAIL % {"who": "loop-b"},
                                    consumers("loop-a") + kv))
    selfie = await deploy(stack, ns, project(stack, "selfie", TAIL % {"who": "selfie"},
                                             consumers("selfie") + kv))
    assert any("never gets its own events" in w for w in selfie["warnings"]), selfie

    assert (await get(stack, ns, "/loop-a/x")).text == "tail worker /x"
    assert (await get(stack, ns, "/loop-b/y")).text == "tail worker /y"
    assert (await get(stack, ns, "/selfie/z")).text == "tail worker /z"
    rows = await dump_until(stack, ns, "loop-a", lambda r: len(r) >= 2)
    # Time for any echo to come round (each hop is one tail delivery).
    await asyncio.sleep(3)
    rows = await dump(stack, ns, "loop-a")
    got = sorted((r["key"].split(":")[0], r["event"]["scriptName"],
                  r["event"]["event"]["request"]["url"].rsplit("/", 1)[1]) for r in rows
                 if r["event"]["event"] and "request" in r["event"]["event"])
    # Exactly the two fetches, each once, at the other worker; the /dump fetches of
    # loop-a are loop-b's too, so only /x and /y are counted here.
    assert [g for g in got if g[2] in ("x", "y", "z")] == [
        ("loop-a", "loop-b", "y"), ("loop-b", "loop-a", "x")], rows
    assert not [r for r in rows if r["key"].startswith("selfie:")], rows
    # No event of a tail() delivery reached anyone.
    assert all(r["event"]["event"] and "request" in r["event"]["event"] for r in rows), rows


async def test_a_consumer_deployed_later_gets_events_from_then_on(
        stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("tg")
    await stack.wdl("ns", "create", ns)
    uploaded = await deploy(stack, ns, project(stack, "early", PRODUCER, consumers("ghost")))
    assert uploaded["warnings"] == [
        f"tail consumer 'ghost' has no active version in namespace {ns} yet: its events "
        "are dropped until it is deployed"]
    assert (await get(stack, ns, "/early/a")).status_code == 201
    data = stack.platform.data
    assert data is not None
    await metrics_until(data.url, lambda t: metric(
        t, "wdl_tail_consumer_events_dropped_total", reason="no_consumer", default=0) >= 1)

    await deploy(stack, ns, project(stack, "ghost", TAIL % {"who": "ghost"},
                                    KV.format(kv="ghostlog")))
    assert (await get(stack, ns, "/early/b")).status_code == 201
    rows = await dump_until(stack, ns, "ghost", lambda r: len(r) >= 1, prefix="ghost:early:")
    assert [r["event"]["event"]["request"]["url"].rsplit("/", 1)[1] for r in rows] == ["b"]


async def test_wrangler_environment_and_other_namespaces_are_refused(
        stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("tr")
    await stack.wdl("ns", "create", ns)
    env_toml = 'tail_consumers = [{ service = "tw", environment = "production" }]\n'
    out = await refused(stack, "deploy", str(project(stack, "app", PRODUCER, env_toml)),
                        "--ns", ns)
    assert "`environment` (a Cloudflare service environment) is not supported" in out, out
    out = await refused(stack, "deploy", str(project(stack, "app", PRODUCER,
                                                     consumers("other/tw"))), "--ns", ns)
    assert "tail_consumer_not_in_namespace" in out, out
    out = await refused(stack, "deploy", str(project(
        stack, "app", PRODUCER, 'streaming_tail_consumers = [{ service = "tw" }]\n')),
        "--ns", ns)
    assert "`streaming_tail_consumers` is not supported" in out, out
