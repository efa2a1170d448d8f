"""Red team of Hyperdrive's route through the egress (issue 26): a tenant's connect() to
`<id>.hyperdrive.wdl:5432` goes to the platform's PgBouncer - past the namespace's
egress policy - only when `<id>` is a config the calling worker's version binds.

The attacker (a deployer token scoped to `attacker`) binds a config of its own, as any
tenant may, and then tries to reach the pooler for the victim's config and by every other
way: the victim's id under deny / public / allow (an allow list naming the victim's host,
`*.hyperdrive.wdl` and the pooler's real address), every spelling of a Hyperdrive host
(case, trailing dot, brackets, ports 5433 / 05432 / 65536, the bare suffix, prefixes and
suffixes, escapes, NUL and whitespace), the pooler's own `127.0.0.1:<port>` and other
loopback ports, PgBouncer's admin console and the victim's database with its own
credentials, a worker of its namespace that does not bind the config, a dispatched user
worker under an outbound Worker, a binding dropped by a redeploy, a config deleted with
force, and more connections than the namespace's socket bound. From a worker, its Durable
Object, a loader child and a self stub.

"Reached the pooler" needs no driver: PostgreSQL's SSLRequest (8 bytes) gets PgBouncer's
one-byte `N`; a StartupMessage gets an ErrorResponse (its message) or an authentication
request (`R`). A refusal of a `.hyperdrive.wdl` name is the platform's ErrorResponse
(`E` to the SSLRequest); of any other address "Network connection lost." (workerd
accepts the CONNECT before the egress decides: docs/dataplane.md "Sockets"). Every
attack ends with the victim unchanged: its config as it was, its worker still reaching
its pooler, the rig's victim data intact.

This platform runs without the operators' loopback setting (production's shape): the
pooler's loopback address is reachable only through the Hyperdrive route.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.integration.test_sockets import LOST
from tests.security.rig import ATTACKER, VICTIM, Actor, Walls
from tests.security.test_hyperdrive_walls import (  # noqa: F401  (the fixture)
    Origin,
    _free_port,
    origins,
)

pytestmark = pytest.mark.security

# A refused connect() to a `.hyperdrive.wdl` name is answered with PostgreSQL's
# ErrorResponse (08004, or 53300 past the socket bound) before the close: to the probe's
# SSLRequest, an `E` where PgBouncer says `N` (REACHED).
HD_REFUSED = "reply E"
WALLS_COMPONENTS = ("hyperdrive",)
SOCKET_LIMIT = 3
WALLS_ENV = {"WDL_SOCKETS_PER_NAMESPACE": str(SOCKET_LIMIT)}


@pytest.fixture(scope="module")
def walls_env() -> dict[str, str]:
    # Both shapes run the pooler on a port the test knows (it is attacked directly).
    return {"WDL_HYPERDRIVE_URL": f"postgresql://127.0.0.1:{_free_port()}"}


# The tenant: one probe, run by the worker, its object, a loader child (the same
# function's source) and a self stub. `mode` is `ssl` (SSLRequest) or
# `startup:<user>:<database>` (a StartupMessage); `hold` opens that many connections to
# the same address first (each answered, then kept open) - the socket bound.
PROBE_FN = r"""
async function probe(to, mode, hold) {
  const SSL = new Uint8Array([0, 0, 0, 8, 4, 210, 22, 47]);
  const enc = new TextEncoder();
  function startup(user, db) {
    const body = enc.encode("user\0" + user + "\0database\0" + db + "\0\0");
    const buf = new Uint8Array(8 + body.length);
    const view = new DataView(buf.buffer);
    view.setInt32(0, buf.length);
    view.setInt32(4, 196608);
    buf.set(body, 8);
    return buf;
  }
  async function ask(sock, bytes) {
    const w = sock.writable.getWriter();
    await w.write(bytes);
    w.releaseLock();
    const r = sock.readable.getReader();
    const { value, done } = await r.read();
    r.releaseLock();
    return done ? null : value;
  }
  const held = [];
  try {
    for (let i = 0; i < hold; i++) {
      const h = connect(to);
      held.push(h);
      if (!(await ask(h, SSL))) return "held connection " + i + " closed";
    }
    let bytes = SSL;
    if (mode && mode.startsWith("startup:")) {
      const [, user, db] = mode.split(":");
      bytes = startup(user, db);
    }
    const s = connect(to);
    const value = await ask(s, bytes);
    await s.close();
    if (!value) return "closed";
    const type = String.fromCharCode(value[0]);
    if (type === "E" && bytes !== SSL) {
      const fields = new TextDecoder().decode(value.subarray(5)).split("\0");
      const m = fields.find((f) => f.startsWith("M"));
      return "reply E " + (m ? m.slice(1) : "");
    }
    return "reply " + type;
  } catch (e) {
    return "error: " + String(e && e.message || e);
  } finally {
    for (const h of held) {
      try { await h.close(); } catch { /* gone */ }
    }
  }
}
"""

# The child's module as a string (the bundler renames nothing in it: esbuild's keepNames
# helpers would be missing from a function's toString()).
CHILD = ("import { connect } from 'cloudflare:sockets';\n" + PROBE_FN +
         "\nexport default { async fetch(r) { const p = new URL(r.url).searchParams;"
         " return new Response(await probe(p.get('to'), p.get('mode') || 'ssl',"
         " Number(p.get('hold') || 0))); } };")

PROBE = r"""
import { DurableObject, WorkerEntrypoint, exports } from "cloudflare:workers";
import { connect } from "cloudflare:sockets";
""" + PROBE_FN + "\nconst CHILD = " + json.dumps(CHILD) + ";\n" + r"""
export class Courier extends DurableObject {
  async go(to, mode, hold) { return probe(to, mode, hold); }
}

export class Prober extends WorkerEntrypoint {
  async go(to, mode, hold) { return probe(to, mode, hold); }
}

export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const p = u.searchParams;
    const to = p.get("to"), mode = p.get("mode") || "ssl", hold = Number(p.get("hold") || 0);
    if (u.pathname.endsWith("/binding")) return Response.json(env.HD ?? null);
    if (u.pathname.endsWith("/worker")) return new Response(await probe(to, mode, hold));
    if (u.pathname.endsWith("/fetch")) {
      // fetch()'s refusal names the policy the gateway judged by (the same route entry
      // as connect()'s, whose refusal the tenant cannot read).
      try { return new Response("fetched " + (await fetch("http://" + to + "/")).status); }
      catch (e) { return new Response("error: " + String(e && e.message || e)); }
    }
    if (u.pathname.endsWith("/object")) {
      return new Response(await env.COURIER.getByName("c").go(to, mode, hold));
    }
    if (u.pathname.endsWith("/self")) {
      return new Response(await exports.Prober({ props: {} }).go(to, mode, hold));
    }
    if (u.pathname.endsWith("/svc-child")) {
      // A child whose globalOutbound is the parent's service binding (to a worker that
      // binds a config): its connect() must not borrow that worker's route.
      const svc = p.get("svc");
      const child = env.LOADER.get("hd-svc-child-" + svc, () => ({
        compatibilityDate: "2025-06-01", mainModule: "c.js", modules: { "c.js": CHILD },
        globalOutbound: env[svc] }));
      try {
        return await child.getEntrypoint().fetch(request);
      } catch (e) {
        return new Response("child threw: " + String(e && e.message || e));
      }
    }
    if (u.pathname.endsWith("/child")) {
      const child = env.LOADER.get("hd-child", () => ({
        compatibilityDate: "2025-06-01", mainModule: "c.js", modules: { "c.js": CHILD } }));
      try {
        return await child.getEntrypoint().fetch(request);
      } catch (e) {
        return new Response("child threw: " + String(e && e.stack || e));
      }
    }
    return new Response("?", { status: 404 });
  },
};
"""

BASE_TOML = """
worker_loaders = [{binding = "LOADER"}]

[[durable_objects.bindings]]
name = "COURIER"
class_name = "Courier"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Courier"]
"""


def bound(cid: str) -> str:
    return BASE_TOML + f'\n[[hyperdrive]]\nbinding = "HD"\nid = "{cid}"\n'


# Service bindings to the attacker's own `hd` (binds its config) and the victim's
# `vprobe` (binds the victim's; granted to the attacker for that test).
SVC_TOML = """
[[services]]
binding = "SVC"
service = "hd"

[[services]]
binding = "VSVC"
service = "victim/vprobe"
"""

# Dispatchers of the attacker's own namespace: with an outbound Worker and without.
DISPATCHER = """\
export default { async fetch(req, env) {
  const u = new URL(req.url);
  const place = u.searchParams.get("place") || "worker";
  try {
    const r = await env.D.get("duser").fetch("http://user/" + place + u.search);
    return new Response(await r.text(), { status: r.status });
  } catch (e) {
    return new Response("thrown " + String(e && e.message || e), { status: 502 });
  }
} };
"""
OUT = 'export default { fetch(req) { return new Response("outbound saw " + req.url); } };\n'

PLACES = ("/worker", "/object", "/child", "/self")
REACHED = "reply N"


def host(cid: str, port: int = 5432) -> str:
    return f"{cid}.hyperdrive.wdl:{port}"


def spellings(cid: str) -> list[str]:
    """Authorities that are not exactly `<cid>.hyperdrive.wdl:5432` (in any case)."""
    h = f"{cid}.hyperdrive.wdl"
    return [
        f"{h}.:5432", f"[{h}]:5432", f"{h}:5433", f"{h}:05432", f"{h}:65536", f"{h}:0",
        f"{h}:+5432", f"{h}:5432:5432", "hyperdrive.wdl:5432", ".hyperdrive.wdl:5432",
        f"x.{h}:5432", f"{h}.evil.com:5432", f"{cid}hyperdrive.wdl:5432",
        f"{cid}%2ehyperdrive.wdl:5432", f"{cid}.hyperdrive%2Ewdl:5432",
        f"{h}%00:5432", f"{h}\x00:5432", f"{h}\x00.evil.com:5432", f" {h}:5432",
        f"{h} :5432", f"{h}:5432 ", f"{h}\t:5432", f"{h}\n:5432",
        f"u@{h}:5432", f"{h}/:5432", f"{cid}\uff0ehyperdrive\uff0ewdl:5432",
        f"{cid[:-1]}.hyperdrive.wdl:5432", f"{cid}0.hyperdrive.wdl:5432",
        f"{cid}.hyperdrive.wdl.localhost:5432", f"{cid}.hyperdrive.wdl%2e:5432",
    ]


async def probe(walls: Walls, ns: str, worker: str, place: str, to: str,
                mode: str = "ssl", hold: int = 0, svc: str = "") -> str:
    r = await walls.get(walls.host(ns), f"/{worker}{place}", timeout=30,
                        params={"to": to, "mode": mode, "hold": str(hold), "svc": svc})
    assert r.status_code == 200, (ns, worker, place, to, r.status_code, r.text)
    return r.text


async def until(walls: Walls, ns: str, worker: str, place: str, to: str, want: str,
                mode: str = "ssl", timeout: float = 10) -> str:
    """The probe's answer once it is `want` (or the last one after `timeout`)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await probe(walls, ns, worker, place, to, mode)
        if got.startswith(want) or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.25)


async def set_egress(walls: Walls, *args: str) -> None:
    await walls.admin.wdl("ns", "egress", "set", *args, "--ns", ATTACKER)
    await asyncio.sleep(1.5)  # the objects' route cache (1 s)


async def two_configs(walls: Walls, origins: tuple[Origin, Origin],  # noqa: F811
                      ) -> tuple[str, str, Actor]:
    """The ids of the victim's config `vdb` and the attacker's `mine` (on the two
    origins), and an admin actor of the victim's namespace to deploy with."""
    admin = walls.admin
    vid = (await admin.wdl("hyperdrive", "create", "vdb", "--ns", VICTIM,
                           "--connection-string", "-", "--json",
                           stdin=origins[0].url + "\n")).json()["id"]
    aid = (await walls.attacker.wdl("hyperdrive", "create", "mine", "--ns", ATTACKER,
                                    "--connection-string", "-", "--json",
                                    stdin=origins[1].url + "\n")).json()["id"]
    return vid, aid, Actor("victim-admin", admin.env, admin.workdir, VICTIM)


@pytest.fixture(scope="module")
async def scene(walls: Walls, origins: tuple[Origin, Origin],  # noqa: F811
                walls_env: dict[str, str]) -> dict[str, Any]:
    victim_origin = origins[0]
    admin, attacker = walls.admin, walls.attacker
    vid, aid, victim = await two_configs(walls, origins)
    await victim.deploy(victim.project("vprobe", PROBE, bound(vid)))
    await attacker.deploy_js("hd", PROBE, bound(aid))
    await attacker.deploy_js("nobind", PROBE, BASE_TOML)
    # Baseline: each worker reaches the pooler for its own config, from every place.
    for place in PLACES:
        assert await until(walls, VICTIM, "vprobe", place, host(vid), REACHED) == REACHED
        assert await until(walls, ATTACKER, "hd", place, host(aid), REACHED) == REACHED
    before = (await admin.wdl("hyperdrive", "get", vid, "--ns", VICTIM, "--json")).json()
    port = int(walls_env["WDL_HYPERDRIVE_URL"].rsplit(":", 1)[1])
    return {"vid": vid, "aid": aid, "before": before, "port": port,
            "victim_origin": victim_origin}


async def victim_unchanged(walls: Walls, scene: dict[str, Any]) -> None:
    after = (await walls.admin.wdl("hyperdrive", "get", scene["vid"], "--ns", VICTIM,
                                   "--json")).json()
    assert after == scene["before"]
    assert await probe(walls, VICTIM, "vprobe", "/worker", host(scene["vid"])) == REACHED
    await walls.assert_victim_intact()


@pytest.mark.parametrize("policy", ["deny", "public", "allow"])
async def test_the_victims_config_is_refused_under_every_policy(
        walls: Walls, scene: dict[str, Any], policy: str) -> None:
    vid, aid, port = scene["vid"], scene["aid"], scene["port"]
    args = {"deny": ["deny"], "public": ["public"],
            "allow": ["allow", "--allow", f"{vid}.hyperdrive.wdl:5432",
                      "--allow", "*.hyperdrive.wdl", "--allow", f"127.0.0.1:{port}"]}[policy]
    await set_egress(walls, *args)
    try:
        for place in PLACES:
            for worker in ("hd", "nobind"):
                got = await probe(walls, ATTACKER, worker, place, host(vid))
                assert got == HD_REFUSED, (policy, worker, place, got)
                got = await probe(walls, ATTACKER, worker, place, host(vid.upper()))
                assert got == HD_REFUSED, (policy, worker, place, got)
            # A worker of the namespace that does not bind the config: refused too.
            got = await probe(walls, ATTACKER, "nobind", place, host(aid))
            assert got == HD_REFUSED, (policy, place, got)
            # The binding is the grant, whatever the policy (as on Cloudflare).
            assert await probe(walls, ATTACKER, "hd", place, host(aid)) == REACHED, \
                (policy, place)
    finally:
        await set_egress(walls, "public")
    await victim_unchanged(walls, scene)


async def test_no_other_spelling_reaches_the_pooler(walls: Walls,
                                                   scene: dict[str, Any]) -> None:
    vid, aid = scene["vid"], scene["aid"]
    # Case is not a spelling of another host: the own config's id in upper case is its own.
    for to in (host(aid.upper()), f"{aid}.HYPERDRIVE.WDL:5432"):
        assert await probe(walls, ATTACKER, "hd", "/worker", to) == REACHED, to
    await set_egress(walls, "allow", "--allow", "*.hyperdrive.wdl", "--allow", "*.evil.com")
    try:
        for place in ("/worker", "/object", "/child"):
            for to in spellings(aid) + spellings(vid):
                got = await probe(walls, ATTACKER, "hd", place, to)
                assert got != REACHED and (got in (LOST, HD_REFUSED)
                                           or got.startswith("error: ")), \
                    (place, repr(to), got)
    finally:
        await set_egress(walls, "public")
    await victim_unchanged(walls, scene)


async def test_the_poolers_own_address_is_refused(walls: Walls, scene: dict[str, Any]) -> None:
    port = scene["port"]
    direct = [f"{h}:{port}" for h in ("127.0.0.1", "localhost", "127.1", "0x7f.1",
                                      "2130706433", "[::1]", "[::ffff:127.0.0.1]",
                                      "a.localhost")]
    # Other loopback ports the pooler's network service would reach (its allow is the
    # pooler's IP, every port): the gateway and control API of this platform.
    others = [f"127.0.0.1:{p}" for p in {int(walls.gateway.rsplit(":", 1)[1]),
                                         int(walls.api.rsplit(":", 1)[1])}]
    # (An allow rule naming `localhost` is refused by the control plane itself.)
    for policy in (["public"], ["allow", "--allow", f"127.0.0.1:{port}"]):
        await set_egress(walls, *policy)
        try:
            for place in PLACES:
                for to in direct + others:
                    got = await probe(walls, ATTACKER, "hd", place, to)
                    assert got == LOST, (policy, place, to, got)
        finally:
            await set_egress(walls, "public")
    await victim_unchanged(walls, scene)


async def test_own_credentials_open_nothing_else_at_the_pooler(
        walls: Walls, scene: dict[str, Any]) -> None:
    vid, aid = scene["vid"], scene["aid"]
    me, them = f"hd_{aid}", f"hd_{vid}"
    for place in ("/worker", "/object"):
        # Control: its own alias asks for a password (md5), so the pooler is reached.
        got = await probe(walls, ATTACKER, "hd", place, host(aid), f"startup:{me}:{me}")
        assert got == "reply R", (place, got)
        for user, db in ((me, "pgbouncer"), (me, them), (me, scene["victim_origin"].database),
                         (me, "postgres"), ("pgbouncer", "pgbouncer"),
                         (scene["victim_origin"].role, them)):
            got = await probe(walls, ATTACKER, "hd", place, host(aid), f"startup:{user}:{db}")
            assert got.startswith("reply E "), (place, user, db, got)
            assert any(w in got for w in ("login rejected", "not allowed", "no such user",
                                          "no such database")), \
                (place, user, db, got)
    await victim_unchanged(walls, scene)


async def test_a_dispatched_user_worker_does_not_reach_the_pooler(
        walls: Walls, scene: dict[str, Any]) -> None:
    """`connect()` of a dispatched user worker under an outbound Worker is refused
    (WdlEgress `via`), even to its own bound config: its outbound Worker sees fetch()
    only. Its loader child and self stub carry `via` on. Without an outbound Worker the
    user worker is an ordinary worker of its namespace: its own config is reached, the
    victim's is not."""
    attacker, vid, aid = walls.attacker, scene["vid"], scene["aid"]
    await attacker.deploy_js("duser", PROBE, bound(aid))
    await attacker.deploy_js("dout", OUT)
    await attacker.deploy_js("dplat", DISPATCHER, """
[[dispatch_namespaces]]
binding = "D"
namespace = "attacker"
outbound = { service = "dout" }
""")
    await attacker.deploy_js("dfree", DISPATCHER, """
[[dispatch_namespaces]]
binding = "D"
namespace = "attacker"
""")
    for place in ("worker", "child", "self"):
        for to in (host(aid), host(vid)):
            r = await walls.attack("dplat", "/", params={"place": place, "to": to},
                                   timeout=30)
            assert (r.status_code, r.text) == (200, HD_REFUSED), (place, to, r.text)
        r = await walls.attack("dfree", "/", params={"place": place, "to": host(vid)},
                               timeout=30)
        assert (r.status_code, r.text) == (200, HD_REFUSED), (place, r.text)
        r = await walls.attack("dfree", "/", params={"place": place, "to": host(aid)},
                               timeout=30)
        assert (r.status_code, r.text) == (200, REACHED), (place, r.text)
    # The user worker's Durable Object runs outside the dispatched call (docs/platforms.md:
    # its namespace's policy, not the outbound Worker): an ordinary object of its
    # namespace, its own config reached, the victim's not.
    r = await walls.attack("dplat", "/", params={"place": "object", "to": host(aid)},
                           timeout=30)
    assert (r.status_code, r.text) == (200, REACHED), r.text
    r = await walls.attack("dplat", "/", params={"place": "object", "to": host(vid)},
                           timeout=30)
    assert (r.status_code, r.text) == (200, HD_REFUSED), r.text
    await victim_unchanged(walls, scene)


async def test_a_binding_removed_by_a_redeploy_is_refused_on_the_next_connect(
        walls: Walls, scene: dict[str, Any]) -> None:
    attacker, aid = walls.attacker, scene["aid"]
    await attacker.deploy_js("flip", PROBE, bound(aid))
    for place in PLACES:
        assert await until(walls, ATTACKER, "flip", place, host(aid), REACHED) == REACHED
    await attacker.deploy_js("flip", PROBE, BASE_TOML)
    # The gateway's route is refreshed by the deploy; the objects' within ROUTE_CACHE_MS.
    for place in PLACES:
        got = await until(walls, ATTACKER, "flip", place, host(aid), HD_REFUSED, timeout=5)
        assert got == HD_REFUSED, (place, got)
    await victim_unchanged(walls, scene)


async def test_a_config_deleted_by_force_opens_nothing(
        walls: Walls, scene: dict[str, Any],
        origins: tuple[Origin, Origin]) -> None:  # noqa: F811
    attacker = walls.attacker
    gone = (await attacker.wdl("hyperdrive", "create", "gone", "--ns", ATTACKER,
                               "--connection-string", "-", "--json",
                               stdin=origins[1].url + "\n")).json()["id"]
    user = f"hd_{gone}"
    await attacker.deploy_js("orphan", PROBE, bound(gone))
    assert await until(walls, ATTACKER, "orphan", "/worker", host(gone), "reply R",
                       f"startup:{user}:{user}") == "reply R"
    await attacker.wdl("hyperdrive", "delete", gone, "--ns", ATTACKER, "--force")
    # The version still names the id; the pooler has dropped the alias and its user.
    for place in ("/worker", "/object"):
        got = await until(walls, ATTACKER, "orphan", place, host(gone), "reply E",
                          f"startup:{user}:{user}")
        assert got.startswith("reply E "), (place, got)
    await victim_unchanged(walls, scene)


async def test_pooler_connections_count_against_the_namespaces_socket_bound(
        walls: Walls, scene: dict[str, Any]) -> None:
    aid, vid = scene["aid"], scene["vid"]
    # SOCKET_LIMIT - 1 held, one more: within the bound.
    got = await probe(walls, ATTACKER, "hd", "/worker", host(aid), hold=SOCKET_LIMIT - 1)
    assert got == REACHED, got
    # SOCKET_LIMIT held: the next is refused (the pooler's connections count like others).
    got = await probe(walls, ATTACKER, "hd", "/worker", host(aid), hold=SOCKET_LIMIT)
    assert got == HD_REFUSED, got
    # The bound is the attacker's: the victim is not held back by it, and it was released.
    assert await probe(walls, VICTIM, "vprobe", "/worker", host(vid),
                       hold=SOCKET_LIMIT - 1) == REACHED
    await asyncio.sleep(0.5)
    assert await probe(walls, ATTACKER, "hd", "/worker", host(aid),
                       hold=SOCKET_LIMIT - 1) == REACHED
    await victim_unchanged(walls, scene)


async def test_refusals_name_no_pooler_address_or_credential(
        walls: Walls, scene: dict[str, Any], caplog: pytest.LogCaptureFixture) -> None:
    vid, port = scene["vid"], scene["port"]
    seen = [await probe(walls, ATTACKER, "hd", place, to)
            for place in PLACES for to in (host(vid), f"127.0.0.1:{port}", "hyperdrive.wdl:5432")]
    binding = (await walls.attack("hd", "/binding")).json()
    seen.append(str(binding))
    assert binding["host"] == f"{scene['aid']}.hyperdrive.wdl"
    text = "\n".join(seen)
    assert str(port) not in text and "127.0.0.1" not in text, text
    victim_password = (await walls.get(walls.host(VICTIM), "/vprobe/binding")).json()["password"]
    # The platform's log lines (the operator's, not the tenant's) name the refusal, not the
    # pooler's address or any password.
    logs = caplog.text
    dev = walls.extra.get("dev")
    if dev is not None:
        logs += dev.log.read_text(errors="replace")
    assert victim_password not in logs and binding["password"] not in logs
    for line in logs.splitlines():
        if "hyperdrive.wdl" in line and "refused" in line:
            assert f":{port}" not in line, line
    await victim_unchanged(walls, scene)


async def test_a_childs_outbound_service_binding_lends_no_route(
        walls: Walls, scene: dict[str, Any]) -> None:
    """A loader child's globalOutbound may be a service binding of its parent: its
    connect() then goes to that binding's entrypoint, which serves no sockets - it does
    not borrow the Hyperdrive configs of the worker the binding targets, ours or the
    victim's (who granted us that worker, "you may call my API")."""
    admin, attacker, vid, aid = walls.admin, walls.attacker, scene["vid"], scene["aid"]
    await admin.wdl("ns", "grant", ATTACKER, "--ns", VICTIM, "--worker", "vprobe")
    try:
        await attacker.deploy_js("svcchild", PROBE, BASE_TOML + SVC_TOML)
        for svc, to in (("SVC", host(aid)), ("VSVC", host(vid)), ("SVC", host(vid)),
                        ("VSVC", host(aid))):
            got = await probe(walls, ATTACKER, "svcchild", "/svc-child", to, svc=svc)
            # workerd: the binding's entrypoint has no connect handler.
            assert got.startswith("error: ") and "proxy request failed" in got, \
                (svc, to, got)
    finally:
        await admin.wdl("ns", "revoke", ATTACKER, "--ns", VICTIM, "--worker", "vprobe")
    await victim_unchanged(walls, scene)


def _refusals(walls: Walls, policy: str, reason: str) -> float:
    registry = walls.extra["platform"].data.metrics.registry
    value = registry.get_sample_value("wdl_egress_socket_refusals_total", {
        "namespace": ATTACKER, "policy": policy, "reason": reason})
    return 0.0 if value is None else float(value)


async def _refused_under(walls: Walls, policy: str, to: str, before: float) -> bool:
    """Whether the gateway judged `to` by `policy`: on the servers, the connect() refusal's
    metric (in-process here); under `wdl dev` (whose log has no gateway lines), fetch()'s
    refusal message, from the same route entry."""
    if walls.kind != "servers":
        said = await probe(walls, ATTACKER, "hd", "/fetch", to)
        return "denies all" in said if policy == "deny" else "loopback" in said
    deadline = asyncio.get_running_loop().time() + 5
    while asyncio.get_running_loop().time() < deadline:
        if _refusals(walls, policy, policy) > before:
            return True
        await asyncio.sleep(0.1)
    return False


async def test_a_policy_change_applies_to_the_next_connect(
        walls: Walls, scene: dict[str, Any]) -> None:
    """No sleep between `wdl ns egress set` and the next connect() from the worker: it is
    judged by the new policy (the gateway's route is refreshed by the change). The
    Hyperdrive route does not depend on the policy, before or after."""
    aid = scene["aid"]
    await set_egress(walls, "public")
    for n, policy in enumerate(("deny", "public", "deny")):
        before = _refusals(walls, policy, policy) if walls.kind == "servers" else 0.0
        await walls.admin.wdl("ns", "egress", "set", policy, "--ns", ATTACKER)
        to = f"127.0.0.1:{40000 + n}"
        assert await probe(walls, ATTACKER, "hd", "/worker", to) == LOST
        if policy == "deny" or walls.kind != "servers":
            assert await _refused_under(walls, policy, to, before), (n, policy, to)
        assert await probe(walls, ATTACKER, "hd", "/worker", host(aid)) == REACHED, policy
    await set_egress(walls, "public")
    await victim_unchanged(walls, scene)
