"""Tenants' dynamic Workers at scale (issue 25, docs/loaders.md "Limits").

A gateway process keeps named children (`env.LOADER.get(id, ...)`) in a least-recently-
used map per namespace under one per-process budget; when it is full the namespace
holding the most children loses its least recently used one. The attacks:

* spraying thousands of children to push another namespace's children out. Before
  (hard cap of 128 per namespace) the spray itself was refused past 128; now it
  succeeds, and the victim's children keep their in-memory state (they are never
  evicted while the attacker holds more than the victim);
* the same id in two namespaces meeting in one isolate;
* a tenant or child reaching the gateway's gc() (`--expose-gc-as`, config.py GC_GLOBAL)
  or the Durable Object that keeps the children.

One gateway process (a child lives in the process that loaded it) and a budget of 16.
"""

from __future__ import annotations

import pytest

from tests.security.rig import ATTACKER, VICTIM, Actor, Walls

pytestmark = pytest.mark.security

BUDGET = 16
WALLS_ENV = {"WDL_GATEWAY_PROCESSES": "1", "WDL_LOADER_RESIDENT": str(BUDGET)}

# A parent: GET /hit?id=X&tag=T loads child X (a counter) once and calls it;
# GET /spray?from=A&count=N loads N distinct children; GET /probe: what it can see.
PARENT_JS = r"""
import { DurableObject } from "cloudflare:workers";
function probeGlobals() {
  const names = Object.getOwnPropertyNames(globalThis);
  const fns = names.filter((n) => { try { return typeof globalThis[n] === "function"; }
                                    catch { return false; } });
  const d = Object.getOwnPropertyDescriptor(globalThis, "__wdl_gc");
  let called = "no";
  try { globalThis.__wdl_gc(); called = "yes"; } catch (e) { called = e.name; }
  return { gcType: typeof gc, platformType: typeof globalThis.__wdl_gc,
    platformDescriptor: d ? { value: String(d.value), writable: d.writable } : null,
    gcFunctions: fns.filter((n) => /gc/i.test(n) ||
                                   /native function gc/.test(String(globalThis[n]))),
    called };
}
const CHILD = (tag) => `
let n = 0;
const probe = (${probeGlobals.toString()})();
export default {
  fetch(request, env) {
    n += 1;
    if (new URL(request.url).pathname === "/probe") {
      return Response.json({ ...probe, env: Object.keys(env).sort() });
    }
    return new Response(${JSON.stringify(tag)} + " " + n);
  },
};`;
const code = (tag) => ({ compatibilityDate: "2025-06-01", mainModule: "c.js",
                         modules: { "c.js": CHILD(tag) }, env: { TAG: tag } });
const atStart = probeGlobals();
export class Box extends DurableObject {
  probe() { return probeGlobals(); }
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const p = "/" + url.pathname.split("/").pop();
    if (p === "/hit") {
      const id = url.searchParams.get("id"), tag = url.searchParams.get("tag");
      const child = env.LOADER.get(id, async () => code(tag));
      return child.getEntrypoint().fetch("http://child/");
    }
    if (p === "/spray") {
      const from = Number(url.searchParams.get("from"));
      const count = Number(url.searchParams.get("count"));
      let ok = 0;
      for (let i = from; i < from + count; i++) {
        const r = await env.LOADER.get("spray-" + i, async () => code("s" + i))
          .getEntrypoint().fetch("http://child/");
        if ((await r.text()) === "s" + i + " 1") ok += 1;
      }
      return new Response(String(ok));
    }
    if (p === "/probe") {
      const child = env.LOADER.get("probe", async () => code("probe"));
      const r = await child.getEntrypoint().fetch("http://child/probe");
      return Response.json({ parent: atStart, request: probeGlobals(),
                             object: await env.BOX.getByName("b").probe(),
                             child: await r.json() });
    }
    return new Response("parent");
  },
};
"""
TOML = """
worker_loaders = [{binding = "LOADER"}]

[[durable_objects.bindings]]
name = "BOX"
class_name = "Box"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Box"]
"""


async def _deploy(walls: Walls) -> None:
    if walls.extra.get("deployed"):
        return
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    await victim.deploy(victim.project("kids", PARENT_JS, TOML))
    await walls.attacker.deploy(walls.attacker.project("spray", PARENT_JS, TOML))
    walls.extra["deployed"] = True


async def _hit(walls: Walls, ns: str, worker: str, child: str, tag: str) -> str:
    r = await walls.get(walls.host(ns), f"/{worker}/hit?id={child}&tag={tag}")
    assert r.status_code == 200, r.text
    return r.text


async def test_a_spraying_namespace_cannot_evict_anothers_fair_share(walls: Walls) -> None:
    await _deploy(walls)
    # The victim's two customers, each a child counting its calls in memory.
    assert await _hit(walls, VICTIM, "kids", "alice", "a") == "a 1"
    assert await _hit(walls, VICTIM, "kids", "bob", "b") == "b 1"
    # The attacker loads 600 distinct children (past the old cap of 128 per
    # namespace, and far past the budget of 16), between the victim's calls.
    calls = 1
    for batch in range(6):
        r = await walls.attack("spray", f"/spray?from={batch * 100}&count=100", timeout=120)
        assert (r.status_code, r.text) == (200, "100"), r.text
        calls += 1
        # Still the same isolates: their counters go on (an evicted child would say 1),
        # and the victim's callback was not asked again (the tag would change).
        assert await _hit(walls, VICTIM, "kids", "alice", "changed") == f"a {calls}"
        assert await _hit(walls, VICTIM, "kids", "bob", "changed") == f"b {calls}"
    # The attacker's first children were evicted for its later ones: loaded afresh.
    r = await walls.attack("spray", "/spray?from=0&count=1")
    assert (r.status_code, r.text) == (200, "1"), r.text
    await walls.assert_victim_intact()


async def test_the_same_id_in_two_namespaces_is_two_isolates(walls: Walls) -> None:
    await _deploy(walls)
    assert await _hit(walls, VICTIM, "kids", "shared", "victim") == "victim 1"
    # The attacker names the victim's id: its own callback, its own isolate.
    assert await _hit(walls, ATTACKER, "spray", "shared", "attacker") == "attacker 1"
    assert await _hit(walls, ATTACKER, "spray", "shared", "attacker") == "attacker 2"
    assert await _hit(walls, VICTIM, "kids", "shared", "victim") == "victim 2"


async def test_no_tenant_or_child_reaches_the_gc_or_the_keeper(walls: Walls) -> None:
    await _deploy(walls)
    r = await walls.attack("spray", "/probe")
    assert r.status_code == 200, r.text
    seen = r.json()
    for who in ("parent", "request", "object", "child"):
        probe = seen[who]
        # V8's gc() is exposed in the gateway's processes under the platform's name; the
        # name cannot be deleted (non-configurable), the shim leaves it undefined and
        # read-only before tenant code runs. The Durable Object runs in the objects
        # process, which has no such flag.
        assert probe["gcType"] == "undefined", (who, probe)
        assert probe["platformType"] == "undefined", (who, probe)
        assert probe["platformDescriptor"] in (
            None, {"value": "undefined", "writable": False}), (who, probe)
        assert probe["gcFunctions"] == [], (who, probe)
        assert probe["called"] == "TypeError", (who, probe)
    # The child's env is what its parent gave it, nothing of the gateway's (CHILDREN).
    assert seen["child"]["env"] == ["TAG"]
