"""Walls of Workers for Platforms (docs/platforms.md, docs/security.md "Dispatch").

The attacker owns a dispatcher (a deployer token scoped to `attacker`). An admin makes
a dispatch namespace `tenants` that grants `attacker` every worker, and a deployer
token scoped to `tenants` deploys the user workers (`wdl deploy --dispatch-namespace`).
What is tried, on the real servers and on `wdl dev`:

- binding a dispatch namespace that did not grant the dispatcher (the victim's):
  refused at deploy with nothing written; after a revoke, refused at call time;
- user worker names that are no worker name (`../x`, `a/b`, `__proto__`, very long,
  the victim's worker): "Worker not found" before any lookup;
- outbound parameters the outbound Worker does not declare: a TypeError, no call;
- a user worker escaping its outbound Worker: a plain fetch(), from an RPC method, from
  an RPC method reached through a self stub of its own (`exports.default()`), from
  a child it loads (default outbound, or a service binding as globalOutbound), through
  a service binding's target. The same code outside a dispatch reaches the loopback
  server (the operator's test setting lets tenants reach it), so each path is real;
  dispatched, every one lands at the outbound Worker and none at the server;
- tags: delete-by-tag in `tenants` deletes only tenants' workers with that tag (the
  victim's worker with the same tag stays); the attacker's token cannot list or delete
  by tag in another namespace, nor deploy with `--dispatch-namespace` outside its own.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest

from tests.security.rig import ATTACKER, VICTIM, Actor, Walls
from tests.security.test_redteam_egress import Outside

pytestmark = pytest.mark.security

WALLS_ENV = {"WDL_EGRESS_ALLOW_LOOPBACK": "1"}
TENANTS = "tenants"

USER = """\
import { WorkerEntrypoint, exports } from "cloudflare:workers";
async function attempt(f) {
  try { const r = await f(); return r.status + " " + (await r.text()); }
  catch (e) { return "refused: " + String(e && e.message || e); }
}
const CHILD = 'export default { async fetch(r) { return fetch(r.headers.get("x-to")); } }';
export default class extends WorkerEntrypoint {
  async fetch(req) {
    const u = new URL(req.url);
    const to = u.searchParams.get("to");
    const how = u.searchParams.get("how");
    const env = this.env;
    if (how === "direct") return new Response(await attempt(() => fetch(to)));
    if (how === "child" || how === "child-service") {
      const code = { compatibilityDate: "2025-11-17", mainModule: "c.js",
                     modules: { "c.js": CHILD } };
      if (how === "child-service") code.globalOutbound = env.HELPER;
      const child = env.LOADER.get("c-" + how, () => code);
      return new Response(await attempt(() =>
        child.getEntrypoint().fetch("http://child/", { headers: { "x-to": to } })));
    }
    if (how === "self") return new Response(await exports.default().viaRpc(to));
    if (how === "service") {
      return new Response(await attempt(() =>
        env.HELPER.fetch("http://helper/?to=" + encodeURIComponent(to))));
    }
    return new Response("?", { status: 400 });
  }
  async viaRpc(to) { return attempt(() => fetch(to)); }
}
"""

USER_TOML = """
worker_loaders = [{binding = "LOADER"}]

[[services]]
binding = "HELPER"
service = "helper"
"""

HELPER = """\
export default { async fetch(r) {
  const to = new URL(r.url).searchParams.get("to") || r.url;
  return fetch(to);
} };
"""

OUTBOUND = """\
export default { async fetch(req, env) {
  return new Response("outbound saw " + req.url + " for " + (env.customer ?? "-"));
} };
"""

DISPATCHER = """\
export default { async fetch(req, env) {
  const u = new URL(req.url);
  const w = u.searchParams.get("w");
  const outbound = JSON.parse(u.searchParams.get("params") || '{"customer":"c1"}');
  try {
    const user = env.DISPATCHER.get(w, {}, { outbound });
    if (u.searchParams.get("mode") === "rpc") {
      return new Response(await user.viaRpc(u.searchParams.get("to")));
    }
    const r = await user.fetch("http://user/?how=" + u.searchParams.get("how") + "&to=" +
                               encodeURIComponent(u.searchParams.get("to") || ""));
    return new Response(await r.text(), { status: r.status });
  } catch (e) {
    return new Response("thrown " + e.name + ": " + e.message, { status: 502 });
  }
} };
"""


def binding(namespace: str) -> str:
    return f"""
[[dispatch_namespaces]]
binding = "DISPATCHER"
namespace = "{namespace}"
outbound = {{ service = "out", parameters = ["customer"] }}
"""


@pytest.fixture
async def outside() -> AsyncIterator[Outside]:
    async with Outside() as server:
        yield server


@pytest.fixture(scope="module")
async def platform(walls: Walls) -> Actor:
    """`tenants` granting `attacker` every worker, its deployer, the attacker's dispatcher."""
    admin = walls.admin
    await admin.wdl("ns", "create", TENANTS)
    await admin.wdl("ns", "grant", ATTACKER, "--ns", TENANTS)
    issued = await admin.wdl("tokens", "issue", "--role", "deployer", "--namespace", TENANTS,
                             "--label", "tenants", "--json")
    workdir = walls.attacker.workdir.parent / "tenants-projects"
    workdir.mkdir(exist_ok=True)
    tenants = Actor("tenants", {**admin.env, "WDL_TOKEN": issued.json()["token"]}, workdir,
                    TENANTS)
    for name, js, toml in (("helper", HELPER, ""), ("user", USER, USER_TOML)):
        await tenants.wdl("deploy", str(tenants.project(name, js, toml)),
                          "--dispatch-namespace", TENANTS, "--json")
    await walls.attacker.deploy_js("out", OUTBOUND)
    await walls.attacker.deploy_js("dispatch", DISPATCHER, binding(TENANTS))
    return tenants


async def test_a_namespace_that_did_not_grant_cannot_be_bound(walls: Walls,
                                                              platform: Actor) -> None:
    project = walls.attacker.project("grab", DISPATCHER, binding(VICTIM))
    refused = await walls.attacker.deploy(project, ok=False)
    assert refused.code != 0 and "service_not_granted" in refused.text, refused.text
    rows = (await walls.attacker.wdl("workers", "--ns", ATTACKER, "--json")).json()
    assert "grab" not in [r["name"] for r in rows]  # nothing written
    r = await walls.attack("dispatch", "/", params={"w": "vault", "how": "direct"})
    assert r.text.startswith("thrown Error: Worker not found"), r.text
    await walls.assert_victim_intact()


@pytest.mark.parametrize("name", ["../x", "a/b", "__proto__", "x" * 5000, "USER", "user/",
                                  "%2e%2e", "vault"])
async def test_names_that_are_no_user_worker_are_not_found(walls: Walls, platform: Actor,
                                                            name: str) -> None:
    r = await walls.attack("dispatch", "/", params={"w": name, "how": "direct"})
    assert r.status_code == 502 and r.text.startswith("thrown Error: Worker not found"), r.text
    await walls.assert_victim_intact()


async def test_undeclared_outbound_parameters_are_refused(walls: Walls, platform: Actor,
                                                          outside: Outside) -> None:
    to = f"http://127.0.0.1:{outside.port}/"
    for params in ({"customer": "c", "admin": True}, {"__proto__": {"x": 1}},
                   {"constructor": "x"}):
        r = await walls.attack("dispatch", "/", params={
            "w": "user", "how": "direct", "to": to, "params": json.dumps(params)})
        assert r.text.startswith("thrown TypeError: options.outbound."), (params, r.text)
        assert "is not a parameter the outbound Worker declares" in r.text
    assert outside.hits == 0


# "self": an RPC call on a self stub of the user worker (exports.default(): issue 25).
ESCAPES = ("direct", "child", "child-service", "service", "self")


async def test_a_user_worker_cannot_escape_its_outbound_worker(walls: Walls, platform: Actor,
                                                               outside: Outside) -> None:
    to = f"http://127.0.0.1:{outside.port}/"
    # The same code, not dispatched (the attacker's own namespace): every path is real.
    await walls.attacker.deploy_js("helper", HELPER)
    await walls.attacker.deploy_js("user", USER, USER_TOML)
    for how in ESCAPES:
        r = await walls.attack("user", "/", params={"how": how, "to": to})
        assert r.text == "200 outside", (how, r.text)
    reached = outside.hits
    assert reached == len(ESCAPES)
    # Dispatched: each fetch lands at the outbound Worker, with the call's parameter.
    for how in ESCAPES:
        r = await walls.attack("dispatch", "/", params={"w": "user", "how": how, "to": to})
        # A self stub's call is not inside the dispatcher's call: the outbound Worker sees
        # it without the call's parameters (docs/platforms.md), but it sees it.
        customer = "-" if how == "self" else "c1"
        assert r.text == f"200 outbound saw {to} for {customer}", (how, r.text)
    r = await walls.attack("dispatch", "/", params={"w": "user", "mode": "rpc", "to": to})
    assert r.text == f"200 outbound saw {to} for c1", r.text
    # Served on its own? A user worker has no namespace URL.
    r = await walls.get(walls.host(TENANTS), "/user/", params={"how": "direct", "to": to})
    assert r.status_code == 404 and r.json()["error"] == "workers_dev_disabled"
    assert outside.hits == reached  # nothing dispatched reached the server
    await walls.assert_victim_intact()


async def test_a_revoke_stops_the_dispatcher_at_the_next_call(walls: Walls,
                                                              platform: Actor) -> None:
    await walls.admin.wdl("ns", "create", "revoked")
    await walls.admin.wdl("ns", "grant", ATTACKER, "--ns", "revoked")
    await walls.admin.wdl("deploy", str(walls.admin.project("user", HELPER)),
                          "--dispatch-namespace", "revoked", "--json")
    await walls.attacker.deploy_js("dispatch2", DISPATCHER, binding("revoked"))
    r = await walls.attack("dispatch2", "/", params={"w": "user", "how": "x"})
    assert r.status_code == 200 and r.text.startswith("outbound saw http://user/"), r.text
    await walls.admin.wdl("ns", "revoke", ATTACKER, "--ns", "revoked")
    r = await walls.attack("dispatch2", "/", params={"w": "user", "how": "x"})
    assert r.status_code == 502 and "does not grant attacker" in r.text, r.text


async def test_tags_stay_inside_their_namespace(walls: Walls, platform: Actor) -> None:
    tenants = platform
    for name in ("t-one", "t-two", "t-keep"):
        tags = ["shared", "cust-1"] if name != "t-keep" else ["cust-2"]
        args = [a for t in tags for a in ("--tag", t)]
        await tenants.wdl("deploy", str(tenants.project(name, HELPER)),
                          "--dispatch-namespace", TENANTS, *args, "--json")
    # The victim's worker carries the same tag (set by the victim's admin).
    await walls.admin.wdl("deploy", str(walls.admin.project("tagged", HELPER)),
                          "--dispatch-namespace", VICTIM, "--tag", "shared", "--json")
    listed = (await tenants.wdl("workers", "--ns", TENANTS, "--tag", "shared", "--json")).json()
    assert sorted(r["name"] for r in listed) == ["t-one", "t-two"]
    assert all(r["tags"] == ["shared", "cust-1"] for r in listed)
    # The attacker's token reaches neither tenants' nor the victim's tags.
    for ns in (TENANTS, VICTIM):
        for cmd in (("workers", "--tag", "shared"), ("delete", "tagged", "shared")):
            out = await walls.attacker.wdl(*cmd, "--ns", ns, "--json", ok=False)
            # A token scoped elsewhere is told the namespace does not exist (as everywhere).
            assert out.code != 0 and "namespace_not_found" in out.text, out.text
    out = await walls.attacker.wdl("deploy", str(walls.attacker.project("t-one", HELPER)),
                                   "--dispatch-namespace", TENANTS, "--json", ok=False)
    assert out.code != 0 and "namespace_not_found" in out.text, out.text
    bad = await tenants.wdl("deploy", str(tenants.project("t-bad", HELPER)),
                            "--dispatch-namespace", TENANTS, *["--tag", "x,y"], ok=False)
    assert bad.code != 0 and "is not a tag" in bad.text
    nine = [a for i in range(9) for a in ("--tag", f"t{i}")]
    bad = await tenants.wdl("deploy", str(tenants.project("t-bad", HELPER)),
                            "--dispatch-namespace", TENANTS, *nine, ok=False)
    assert bad.code != 0 and "at most 8" in bad.text
    gone = (await tenants.wdl("delete", "tagged", "shared", "--ns", TENANTS, "--json")).json()
    assert gone["deleted"] == ["t-one", "t-two"] and gone["refused"] == []
    rows = {r["name"]: r for r in (await tenants.wdl("workers", "--ns", TENANTS, "--json")).json()}
    assert rows["t-one"]["deleted"] and rows["t-two"]["deleted"]
    assert not rows["t-keep"]["deleted"] and not rows["user"]["deleted"]
    victim = (await walls.admin.wdl("workers", "--ns", VICTIM, "--tag", "shared",
                                    "--json")).json()
    assert [(r["name"], r["deleted"]) for r in victim] == [("tagged", False)]
    await walls.assert_victim_intact()
