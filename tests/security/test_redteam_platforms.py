"""Red team of Workers for Platforms (docs/platforms.md), beyond test_platform_walls.py.

The attacker (a deployer token scoped to `attacker`) is its own platform: its namespace
is both the dispatcher's and the dispatch namespace (a dispatcher may bind its own
namespace), with an outbound Worker `out` that shows what it is handed. The victim runs
a worker `api` that calls a third party with its secret API key, and grants `attacker`
that one worker (an ordinary service grant: "you may call my API").

What is tried, on the real servers and on `wdl dev`:

- the attacker's outbound Worker intercepting the *victim's* fetches: a dispatched user
  worker calls the victim's granted `api` over a service binding; the victim's
  fetch (with its secret) must reach its third party, not the attacker's outbound;
- a user worker escaping its outbound Worker by dispatching itself: a
  `dispatch_namespaces` binding of its own (its own namespace needs no grant), with no
  outbound, runs the next user worker with a free egress;
- the outbound Worker seeing another call's parameters: values that are the same as
  JSON (two Maps, two ArrayBuffers, NaN and null) named one outbound isolate, so the
  second end user's fetches reached the outbound with the first one's parameters;
- one namespace taking every named outbound isolate of the gateway (256 parameter sets
  per process): every other platform's outbound then got a fresh isolate per fetch.

Tried and held (probed, not kept as tests): limits of -1, "5", 1e9, 1e300, NaN, 0.5 ms
(TypeError); RPC names `__WdlDispatch`, `__WdlTail` (not an RPC method); `connect()`
from a user worker (refused by the egress); PUT tags on the victim's worker
(`namespace_not_found`); tags with `&`, `../*` (422). Open gaps: docs/security.md.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls
from tests.security.test_redteam_egress import Outside

pytestmark = pytest.mark.security

WALLS_ENV = {"WDL_EGRESS_ALLOW_LOOPBACK": "1"}
API_KEY = "victim-api-key-8c1f"

# The victim's API worker: calls its third party with its secret.
VICTIM_API = """\
export default { async fetch(r, env) {
  const to = new URL(r.url).searchParams.get("to");
  const res = await fetch(to, { headers: { authorization: "Bearer " + env.API_KEY } });
  return new Response("api got " + res.status + " " + await res.text());
} };
"""

OUT = """\
function show(p) {
  if (p instanceof Map) return "Map" + JSON.stringify([...p]);
  if (p instanceof ArrayBuffer) return "AB[" + [...new Uint8Array(p)].join(",") + "]";
  if (typeof p === "number") return "num:" + String(p);
  return JSON.stringify(p);
}
export default { async fetch(req, env) {
  return new Response("outbound saw " + req.url + " auth=" +
    (req.headers.get("authorization") || "-") + " customer=" + show(env.customer));
} };
"""

USER = """\
import { WorkerEntrypoint } from "cloudflare:workers";
async function attempt(f) {
  try { const r = await f(); return r.status + " " + (await r.text()); }
  catch (e) { return "refused: " + String(e && e.message || e); }
}
export default class extends WorkerEntrypoint {
  async fetch(req) {
    const u = new URL(req.url);
    const to = u.searchParams.get("to") || "http://example.com/";
    const how = u.searchParams.get("how");
    const q = "?to=" + encodeURIComponent(to);
    if (how === "direct") return new Response(await attempt(() => fetch(to)));
    if (how === "victim") {
      return new Response(await attempt(() => this.env.VAPI.fetch("http://api/" + q)));
    }
    if (how === "nested") {
      return new Response(await attempt(() =>
        this.env.SELF.get("helper").fetch("http://helper/" + q)));
    }
    return new Response("?", { status: 400 });
  }
}
"""

USER_TOML = """
[[services]]
binding = "VAPI"
service = "victim/api"

[[dispatch_namespaces]]
binding = "SELF"
namespace = "attacker"
"""

HELPER = """\
export default { async fetch(r) {
  return fetch(new URL(r.url).searchParams.get("to"));
} };
"""

DISPATCHER = """\
function value(kind, v) {
  if (kind === "map") return new Map([["id", v]]);
  if (kind === "ab") return new TextEncoder().encode(v).buffer;
  if (kind === "nan") return NaN;
  if (kind === "null") return null;
  return v;
}
export default { async fetch(req, env) {
  const u = new URL(req.url);
  const p = u.searchParams;
  try {
    const outbound = { customer: value(p.get("kind"), p.get("v")) };
    const user = env.DISPATCHER.get(p.get("w") || "user", {}, { outbound });
    const r = await user.fetch("http://user/?how=" + p.get("how") + "&to=" +
                               encodeURIComponent(p.get("to") || "http://example.com/"));
    return new Response(await r.text(), { status: r.status });
  } catch (e) {
    return new Response("thrown " + e.name + ": " + e.message, { status: 502 });
  }
} };
"""

DISPATCHER_TOML = """
[[dispatch_namespaces]]
binding = "DISPATCHER"
namespace = "attacker"
outbound = { service = "out", parameters = ["customer"] }
"""


@pytest.fixture
async def outside() -> AsyncIterator[Outside]:
    async with Outside() as server:
        yield server


@pytest.fixture(scope="module")
async def scene(walls: Walls) -> Walls:
    admin = walls.admin
    await admin.wdl("deploy", str(admin.project("api", VICTIM_API)), "--ns", VICTIM, "--json")
    await admin.wdl("secret", "put", "API_KEY", "--ns", VICTIM, "--worker", "api",
                    stdin=API_KEY)
    await admin.wdl("ns", "grant", ATTACKER, "--ns", VICTIM, "--worker", "api")
    attacker = walls.attacker
    await attacker.deploy_js("out", OUT)
    await attacker.deploy_js("helper", HELPER)
    await attacker.deploy_js("user", USER, USER_TOML)
    await attacker.deploy_js("plat", DISPATCHER, DISPATCHER_TOML)
    return walls


async def test_the_victims_fetches_never_reach_the_attackers_outbound(
        scene: Walls, outside: Outside) -> None:
    walls = scene
    to = f"http://127.0.0.1:{outside.port}/"
    # Undispatched, the user worker's call reaches the victim's API, which reaches its
    # third party (the loopback server) with its key: the path is real.
    r = await walls.attack("user", "/", params={"how": "victim", "to": to})
    assert r.text == "200 api got 200 outside", r.text
    assert outside.hits == 1
    # Dispatched under the attacker's outbound Worker: the victim's API still reaches
    # its own third party; the attacker's outbound never sees the victim's request.
    r = await walls.attack("plat", "/", params={"how": "victim", "to": to, "v": "c1"})
    assert r.text == "200 api got 200 outside", r.text
    assert API_KEY not in r.text
    assert outside.hits == 2
    # The user worker's own fetch is still the outbound's.
    r = await walls.attack("plat", "/", params={"how": "direct", "to": to, "v": "c1"})
    assert r.text == f'200 outbound saw {to} auth=- customer="c1"', r.text
    assert outside.hits == 2
    await walls.assert_victim_intact()


async def test_a_user_worker_cannot_escape_by_dispatching_itself(
        scene: Walls, outside: Outside) -> None:
    walls = scene
    to = f"http://127.0.0.1:{outside.port}/"
    # Undispatched, its own dispatch binding works (the path is real).
    r = await walls.attack("user", "/", params={"how": "nested", "to": to})
    assert r.text == "200 outside", r.text
    assert outside.hits == 1
    r = await walls.attack("plat", "/", params={"how": "nested", "to": to, "v": "c1"})
    assert r.text.startswith("refused: a dispatched user worker cannot dispatch"), r.text
    assert outside.hits == 1  # nothing reached the network
    await walls.assert_victim_intact()


@pytest.mark.parametrize("kind,first,second", [
    ("map", "alice", "bob"), ("ab", "alice", "bob"), ("nan", "", "")])
async def test_the_outbound_sees_no_other_calls_parameters(scene: Walls, kind: str,
                                                           first: str, second: str) -> None:
    walls = scene
    if kind == "nan":
        # NaN and null are both `null` as JSON: the null call first, then NaN.
        r = await walls.attack("plat", "/", params={"how": "direct", "kind": "null"})
        assert r.text.endswith("customer=null"), r.text
    else:
        r = await walls.attack("plat", "/", params={"how": "direct", "kind": kind,
                                                    "v": first})
        assert r.text.startswith("thrown TypeError: options.outbound.customer"), r.text
    r = await walls.attack("plat", "/", params={"how": "direct", "kind": kind, "v": second})
    assert r.status_code == 502, r.text
    assert r.text.startswith("thrown TypeError: options.outbound.customer"), r.text
    assert "JSON value" in r.text, r.text
    assert first not in r.text or not first
    # Plain JSON values still work.
    r = await walls.attack("plat", "/", params={"how": "direct", "v": json.dumps("c2")[1:-1]})
    assert r.text.endswith('customer="c2"'), r.text


# A victim platform: its outbound Worker counts the fetches its isolate answered, so a
# named isolate reused across calls shows a count above 1, a fresh one always 1.
VOUT = """\
let answered = 0;
export default { async fetch(req, env) {
  answered += 1;
  return new Response(String(answered));
} };
"""

VUSER = """\
export default { async fetch() { return fetch("http://example.com/"); } };
"""

VDISPATCH = """\
export default { async fetch(req, env) {
  const customer = new URL(req.url).searchParams.get("c");
  const r = await env.D.get("vuser", {}, { outbound: { customer } }).fetch(req.url);
  return new Response(await r.text());
} };
"""

VTOML = """
[[dispatch_namespaces]]
binding = "D"
namespace = "vplat"
outbound = { service = "vout", parameters = ["customer"] }
"""

# The attacker's dispatcher: `n` calls, each with parameters never seen before.
FLOOD = """\
export default { async fetch(req, env) {
  const u = new URL(req.url);
  const n = Number(u.searchParams.get("n"));
  const tag = u.searchParams.get("tag");
  for (let i = 0; i < n; i++) {
    const r = await env.DISPATCHER.get("user", {}, { outbound: { customer: tag + i } })
      .fetch("http://user/?how=direct");
    await r.text();
  }
  return new Response("flooded " + n);
} };
"""


async def test_one_namespace_cannot_take_every_named_outbound_isolate(scene: Walls) -> None:
    walls = scene
    admin = walls.admin
    await admin.wdl("ns", "create", "vplat")
    for name, js, toml in (("vout", VOUT, ""), ("vuser", VUSER, ""),
                           ("vd", VDISPATCH, VTOML)):
        await admin.wdl("deploy", str(admin.project(name, js, toml)), "--ns", "vplat",
                        "--json")
    await walls.attacker.deploy_js("flood", FLOOD, DISPATCHER_TOML)

    async def victim_counts(customer: str) -> list[int]:
        counts = []
        for _ in range(8):
            r = await walls.get(walls.host("vplat"), "/vd/", params={"c": customer})
            assert r.status_code == 200, r.text
            counts.append(int(r.text))
        return counts

    # Before: the victim's parameter set gets a named isolate, reused call after call.
    before = await victim_counts("before")
    assert max(before) >= 3, before
    # The attacker's parameter sets, over several connections (every gateway process).
    for round_ in range(4):
        r = await walls.attack("flood", "/", params={"n": "300", "tag": f"r{round_}-"},
                               timeout=300)
        assert r.text == "flooded 300", r.text
    # The victim's calls with one parameter set: its outbound isolate is named and kept.
    after = await victim_counts("after")
    assert max(after) >= 3, after
    await walls.assert_victim_intact()
