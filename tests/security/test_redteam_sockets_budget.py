"""Red team (second pass, issue 26): the subrequest budget carried in a connect()'s
address, md5 on the pooler hop, and Hyperdrive's refusals in PostgreSQL's protocol.

1. The tenant's `cloudflare:sockets` is the platform's `__wdl/sockets.js`: inside a
   request it appends `.<request name>.wdl-request` to the host, the egress takes it off
   and charges that request (workerd/gateway/sockets.js splitRequestName). The attacker
   reaches workerd's own `connect()` (a computed `import()` the rewrite cannot see) and
   writes the suffix itself: the victim's live request name (which the test hands it, as
   if it had learnt it), a made-up name, nested and upper-case forms. A name of another
   namespace or a made-up one is refused (nothing reaches the pooler) and spends nothing
   of the victim's request; only its own live name opens anything. A Hyperdrive host
   refused for the budget answers in PostgreSQL's protocol like every other Hyperdrive
   refusal (before: a bare close, on which postgres.js waits out its connect_timeout).
2. PgBouncer's hop uses md5 (CLIENT_AUTH): a wrong password, another config's password,
   the md5 hash as the password, the origin's credentials and the admin console are all
   refused.
3. Refusals of `.hyperdrive.wdl` names carry no oracle: the victim's config id and an id
   nobody has get the same bytes in about the same time, and no tenant byte is echoed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import statistics
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.test_sockets import LOST
from tests.security.rig import ATTACKER, VICTIM, Walls
from tests.security.test_hyperdrive_walls import (  # noqa: F401  (the fixture)
    Origin,
    _free_port,
    _login,
    origins,
)
from tests.security.test_redteam_hyperdrive_routes import PROBE_FN, two_configs

pytestmark = pytest.mark.security
WALLS_COMPONENTS = ("hyperdrive",)


@pytest.fixture(scope="module")
def walls_env() -> dict[str, str]:
    return {"WDL_HYPERDRIVE_URL": f"postgresql://127.0.0.1:{_free_port()}"}


# `probe` of the routes' red team, once with the platform's connect() (named after the
# request) and once with workerd's own (a computed import: nothing appended).
# A loader child's module as a string (its `cloudflare:sockets` is the child's own import).
CHILD = ("import { connect } from 'cloudflare:sockets';\n" + PROBE_FN +
         "\nexport default { async fetch(r) { const p = new URL(r.url).searchParams;"
         " return new Response(await probe(p.get('to'), p.get('mode') || 'ssl',"
         " Number(p.get('hold') || 0))); } };")

WORKER = r"""
import { connect as platformConnect } from "cloudflare:sockets";
const CHILD = """ + json.dumps(CHILD) + r""";
""" + PROBE_FN.replace("function probe(to, mode, hold)",
                       "function probe(to, mode, hold, connect = platformConnect)") + r"""
export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const p = u.searchParams;
    const to = p.get("to"), mode = p.get("mode") || "ssl", hold = Number(p.get("hold") || 0);
    if (u.pathname.endsWith("/name")) {
      return new Response(request.headers.get("x-wdl-request-id") || "none");
    }
    if (u.pathname.endsWith("/binding")) return Response.json(env.HD ?? null);
    if (u.pathname.endsWith("/child")) {
      const child = env.LOADER.get("budget-child", () => ({
        compatibilityDate: "2025-06-01", mainModule: "c.js", modules: { "c.js": CHILD } }));
      return child.getEntrypoint().fetch(request);
    }
    if (u.pathname.endsWith("/stream")) {
      // Its name first, then (still inside the request) the probe after `wait` ms.
      const { readable, writable } = new TransformStream();
      const w = writable.getWriter();
      const enc = new TextEncoder();
      (async () => {
        await w.write(enc.encode(request.headers.get("x-wdl-request-id") + "\n"));
        await new Promise((r) => setTimeout(r, Number(p.get("wait") || 0)));
        await w.write(enc.encode(await probe(to, mode, hold)));
        await w.close();
      })();
      return new Response(readable);
    }
    if (u.pathname.endsWith("/raw")) {
      const { connect } = await import(["cloudflare", "sockets"].join(":"));
      // `self`: the request's own name, which only this request knows.
      const own = request.headers.get("x-wdl-request-id");
      return new Response(await probe(to.replace("SELF", own), mode, hold, connect));
    }
    return new Response(await probe(to, mode, hold));
  },
};
"""


def bound(cid: str) -> str:
    return ('worker_loaders = [{binding = "LOADER"}]\n'
            f'[[hyperdrive]]\nbinding = "HD"\nid = "{cid}"\n')


def host(cid: str, port: int = 5432) -> str:
    return f"{cid}.hyperdrive.wdl:{port}"


REACHED = "reply N"


async def probe(walls: Walls, ns: str, worker: str, path: str, to: str,
                mode: str = "ssl", hold: int = 0) -> str:
    r = await walls.get(walls.host(ns), f"/{worker}{path}", timeout=60,
                        params={"to": to, "mode": mode, "hold": str(hold)})
    assert r.status_code == 200, (ns, worker, path, to, r.status_code, r.text)
    return r.text


async def until(walls: Walls, ns: str, worker: str, to: str, timeout: float = 15) -> str:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        got = await probe(walls, ns, worker, "/worker", to)
        if got == REACHED or asyncio.get_running_loop().time() > deadline:
            return got
        await asyncio.sleep(0.25)


@pytest.fixture(scope="module")
async def scene(walls: Walls, origins: tuple[Origin, Origin],  # noqa: F811
                walls_env: dict[str, str]) -> dict[str, Any]:
    victim_origin, attacker_origin = origins
    admin, attacker = walls.admin, walls.attacker
    vid, aid, victim = await two_configs(walls, origins)
    await victim.deploy(victim.project("vbudget", WORKER, bound(vid)))
    await attacker.deploy_js("budget", WORKER, bound(aid))
    assert await until(walls, VICTIM, "vbudget", host(vid)) == REACHED
    assert await until(walls, ATTACKER, "budget", host(aid)) == REACHED
    before = (await admin.wdl("hyperdrive", "get", vid, "--ns", VICTIM, "--json")).json()
    port = int(walls_env["WDL_HYPERDRIVE_URL"].rsplit(":", 1)[1])
    return {"vid": vid, "aid": aid, "before": before, "port": port,
            "victim_origin": victim_origin, "attacker_origin": attacker_origin}


async def victim_unchanged(walls: Walls, scene: dict[str, Any]) -> None:
    after = (await walls.admin.wdl("hyperdrive", "get", scene["vid"], "--ns", VICTIM,
                                   "--json")).json()
    assert after == scene["before"]
    assert await probe(walls, VICTIM, "vbudget", "/worker", host(scene["vid"])) == REACHED
    await walls.assert_victim_intact()


async def test_only_the_requests_own_name_opens_a_connection(
        walls: Walls, scene: dict[str, Any]) -> None:
    aid, vid = scene["aid"], scene["vid"]
    own_host = f"{aid}.hyperdrive.wdl"
    # The victim's live request name: a request of the victim's that answers it (live for
    # 30 s after its response, the budget's grace for waitUntil work).
    victim_name = (await walls.get(walls.host(VICTIM), "/vbudget/name")).text
    uuid.UUID(victim_name)
    # Control: its own name, written by itself on workerd's own connect(), is charged and
    # opens the pooler; with no name at all (uncounted, as documented) too.
    assert await probe(walls, ATTACKER, "budget", "/raw",
                       f"{own_host}.SELF.wdl-request:5432") == REACHED
    assert await probe(walls, ATTACKER, "budget", "/raw", host(aid)) == REACHED
    forged = str(uuid.uuid4())
    tries = {
        "the victim's live name": f"{own_host}.{victim_name}.wdl-request:5432",
        "the victim's live name, upper case": f"{own_host}.{victim_name.upper()}"
                                              ".WDL-REQUEST:5432",
        "a made-up name": f"{own_host}.{forged}.wdl-request:5432",
        "the victim's name inside its own": f"{own_host}.{victim_name}.wdl-request"
                                            ".SELF.wdl-request:5432",
        "its own name inside the victim's": f"{own_host}.SELF.wdl-request"
                                            f".{victim_name}.wdl-request:5432",
        "the victim's config by its own name": f"{vid}.hyperdrive.wdl.SELF.wdl-request:5432",
        "the victim's config by the victim's name": f"{vid}.hyperdrive.wdl.{victim_name}"
                                                    ".wdl-request:5432",
        "loopback by its own name": f"127.0.0.1.SELF.wdl-request:{scene['port']}",
        "loopback in hex by its own name": f"0x7f.1.SELF.wdl-request:{scene['port']}",
        "localhost by its own name": f"localhost.SELF.wdl-request:{scene['port']}",
        "mapped IPv6 loopback by its own name":
            f"[::ffff:127.0.0.1].SELF.wdl-request:{scene['port']}",
        "IPv6 loopback inside the name": f"[::1.SELF.wdl-request]:{scene['port']}",
        "the victim's name on a bracketed host": f"[{own_host}.{victim_name}.wdl-request]"
                                                 ":5432",
    }
    for what, to in tries.items():
        got = await probe(walls, ATTACKER, "budget", "/raw", to)
        # "reply E": PostgreSQL's ErrorResponse of a refused Hyperdrive host.
        assert got in (LOST, "closed", "reply E") or got.startswith("error: "), (what, got)
        assert got != REACHED, (what, got)
    # Through the platform's connect() the suffix it writes is its own data: the egress
    # takes off the name the platform appended only, and what is left is no address.
    for what in ("the victim's live name", "a made-up name"):
        got = await probe(walls, ATTACKER, "budget", "/worker", tries[what])
        assert got != REACHED, (what, got)
    await victim_unchanged(walls, scene)


async def test_a_forged_name_spends_nothing_of_the_victims_request(
        walls: Walls, scene: dict[str, Any]) -> None:
    """A victim request with a budget of 2 tells its name (the first line of its streamed
    answer) and goes on; while it waits, the attacker spends that live name 12 times; then
    the same request opens its 2 connections."""
    aid, vid = scene["aid"], scene["vid"]
    await walls.admin.wdl("ns", "limits", "set", "--subrequests", "2", "--ns", VICTIM)
    try:
        # A third connection of one request is refused once the limit is in force.
        over = ""
        for _ in range(40):
            over = await probe(walls, VICTIM, "vbudget", "/worker", host(vid), hold=2)
            if over != REACHED:
                break
            await asyncio.sleep(0.25)
        assert over != REACHED, over
        async with httpx.AsyncClient(base_url=walls.gateway, timeout=60) as client, \
                client.stream("GET", "/vbudget/stream", headers={"host": walls.host(VICTIM)},
                              params={"to": host(vid), "hold": "1", "wait": "4000"}) as r:
                lines = r.aiter_lines()
                name = (await anext(lines)).strip()
                uuid.UUID(name)
                # 12 tries: a name is live in the gateway process that serves its request
                # only, and a try lands on any of them.
                for _ in range(12):
                    got = await probe(walls, ATTACKER, "budget", "/raw",
                                      f"{aid}.hyperdrive.wdl.{name}.wdl-request:5432")
                    assert got != REACHED, got
                rest = "".join([line async for line in lines])
        # Two connections (`hold=1` then one more) of the request whose name was used.
        assert rest == REACHED, rest
    finally:
        await walls.admin.wdl("ns", "limits", "set", "--subrequests", "0", "--ns", VICTIM)
    await victim_unchanged(walls, scene)


async def test_over_the_budget_a_hyperdrive_host_answers_in_postgres(
        walls: Walls, scene: dict[str, Any]) -> None:
    """Before: the budget's refusal closed the socket bare (`closed`) - postgres.js then
    waits out its connect_timeout (30 s) instead of failing at once. After: a FATAL
    ErrorResponse naming the budget."""
    aid = scene["aid"]
    await walls.admin.wdl("ns", "limits", "set", "--subrequests", "1", "--ns", ATTACKER)
    try:
        got = ""
        for _ in range(40):
            got = await probe(walls, ATTACKER, "budget", "/worker", host(aid),
                              mode=f"startup:hd_{aid}:hd_{aid}", hold=1)
            if "subrequests" in got.lower():
                break
            await asyncio.sleep(0.25)
        assert got == "reply E connect() refused by the platform: Too many subrequests.", got
    finally:
        await walls.admin.wdl("ns", "limits", "set", "--subrequests", "0", "--ns", ATTACKER)
    await victim_unchanged(walls, scene)


async def test_a_loader_childs_connect_counts_against_the_parents_request(
        walls: Walls, scene: dict[str, Any]) -> None:
    """A request's loader child connects from the parent's request: its connections count
    against that request's budget, as its fetch()es do. Before: the child's
    `cloudflare:sockets` was workerd's own (the rewrite covered deployed modules only),
    so a budget of 1 let the child open any number."""
    aid = scene["aid"]
    # Control: without a limit (a test before may have set one: until it is lifted) the
    # child's two connections reach the pooler.
    control = ""
    for _ in range(40):
        control = await probe(walls, ATTACKER, "budget", "/child", host(aid), hold=1)
        if control == REACHED:
            break
        await asyncio.sleep(0.25)
    assert control == REACHED, control
    await walls.admin.wdl("ns", "limits", "set", "--subrequests", "1", "--ns", ATTACKER)
    try:
        got = ""
        for _ in range(40):
            # Its worker's own connect() first: the limit is in force.
            if await probe(walls, ATTACKER, "budget", "/worker", host(aid), hold=1) != REACHED:
                got = await probe(walls, ATTACKER, "budget", "/child", host(aid), hold=1)
                break
            await asyncio.sleep(0.25)
        # The held connection is the one of the budget; the second is refused in
        # PostgreSQL's protocol.
        assert got == "reply E", got
    finally:
        await walls.admin.wdl("ns", "limits", "set", "--subrequests", "0", "--ns", ATTACKER)
    await victim_unchanged(walls, scene)


async def test_md5_on_the_pooler_hop_opens_nothing_but_its_own_alias(
        walls: Walls, scene: dict[str, Any]) -> None:
    port, aid, vid = scene["port"], scene["aid"], scene["vid"]
    a = (await walls.get(walls.host(ATTACKER), "/budget/binding")).json()
    v = (await walls.get(walls.host(VICTIM), "/vbudget/binding")).json()
    origin: Origin = scene["victim_origin"]

    def md5(password: str, user: str) -> str:
        return "md5" + hashlib.md5((password + user).encode()).hexdigest()

    tries = {
        "a wrong password": (v["user"], "x" * len(v["password"]), v["database"]),
        "its own password for the victim's user": (v["user"], a["password"], v["database"]),
        "its own credentials, the victim's alias": (a["user"], a["password"], v["database"]),
        "the md5 hash of the victim's password as the password":
            (v["user"], md5(v["password"], v["user"]), v["database"]),
        "the md5 hash of its own password as the password":
            (a["user"], md5(a["password"], a["user"]), a["database"]),
        "the bare md5 digest": (a["user"], md5(a["password"], a["user"])[3:], a["database"]),
        "an empty password": (a["user"], "", a["database"]),
        "the origin's credentials, the victim's alias": (origin.role, origin.password,
                                                         v["database"]),
        "the admin console with its own password": ("wdl_pooler_admin", a["password"],
                                                    "pgbouncer"),
        "the admin console as its own user": (a["user"], a["password"], "pgbouncer"),
        "the admin console, md5 of its own password": (
            "wdl_pooler_admin", md5(a["password"], "wdl_pooler_admin"), "pgbouncer"),
    }
    for what, (user, password, db) in tries.items():
        got = await asyncio.to_thread(_login, port, user, password, db)
        assert got.startswith("refused"), (what, got)
    # The wall holds for the right reason: md5 logs each config into its own origin.
    assert (await asyncio.to_thread(_login, port, a["user"], a["password"], a["database"])
            ) == f"ok {scene['attacker_origin'].role}"
    assert f"hd_{aid}" == a["user"] and f"hd_{vid}" == v["user"]
    await victim_unchanged(walls, scene)


async def test_hyperdrive_refusals_are_the_same_bytes_and_time_for_any_id(
        walls: Walls, scene: dict[str, Any]) -> None:
    vid = scene["vid"]
    mode = "startup:hd_x:hd_x"
    expected = "reply E connect() refused by the platform: a Hyperdrive config this " \
               "worker does not bind"
    # Tenant bytes in the authority (protocol bytes of an ErrorResponse among them) are
    # never echoed: the message is the platform's.
    for to in (host(vid), host("f" * 32), host(vid.upper()), "MRoot\x00.hyperdrive.wdl:5432",
               "x.hyperdrive.wdl:5432", f"{vid}.hyperdrive.wdl:5432\x00E"):
        got = await probe(walls, ATTACKER, "budget", "/worker", to, mode=mode)
        assert got in (expected, LOST, "closed") or got.startswith("error: "), (to, got)
        assert "Root" not in got and vid not in got.lower(), (to, got)
    times: dict[str, list[float]] = {"victim": [], "random": []}
    for i in range(60):
        which = "victim" if i % 2 == 0 else "random"
        to = host(vid) if which == "victim" else host(uuid.uuid4().hex)
        t0 = time.perf_counter()
        got = await probe(walls, ATTACKER, "budget", "/worker", to, mode=mode)
        times[which].append((time.perf_counter() - t0) * 1000)
        assert got == expected, (which, got)
    medians = {k: statistics.median(v) for k, v in times.items()}
    print("\nrefusal medians (ms, 30 each):", json.dumps(
        {k: round(v, 2) for k, v in medians.items()}))
    # Both are one code path (no lookup of other namespaces' ids): no difference beyond
    # noise on a shared machine.
    assert abs(medians["victim"] - medians["random"]) < max(10.0, 0.3 * medians["random"]), \
        medians
    await victim_unchanged(walls, scene)


# A module of the tenant's named so that workerd may take it for the platform's
# `__wdl/sockets.js` (the rewritten `cloudflare:sockets`) or `__wdl/requests.js` (which
# names every fetch for the budget): the validator checks the name as written.
SHADOW_NAMES = ["./__wdl/sockets.js", "././__wdl/sockets.js", "/__wdl/sockets.js",
                "a/../__wdl/sockets.js", ".//__wdl/sockets.js", "./__WDL/sockets.js",
                "./__wdl/requests.js", "lib/__wdl/sockets.js", "__wdl/sockets.js"]
SHADOW_MAIN = """
import * as s from "cloudflare:sockets";
export default { fetch() { return new Response("fake " + typeof s.FAKE); } };
"""
SHADOW = """
export const FAKE = 1;
export const HEADER = "x"; export function currentRequest() { return undefined; }
export function runNamed(id, fn) { return fn(); } export function carryName(r) { return r; }
export function wrapDefault(x) { return x; } export function connect() { return null; }
"""


@pytest.mark.parametrize("name", SHADOW_NAMES)
async def test_a_module_cannot_shadow_the_platforms_sockets_or_requests(
        walls: Walls, scene: dict[str, Any], name: str) -> None:
    def b64(text: str) -> str:
        return base64.b64encode(text.encode()).decode()

    # The main module beside the shadow (`lib/index.js` imports `../__wdl/sockets.js`).
    main = "lib/index.js" if name.startswith("lib/") else "index.js"
    payload = {"main_module": main, "compatibility_date": "2025-11-17",
               "modules": [{"name": main, "content_b64": b64(SHADOW_MAIN)},
                           {"name": name, "content_b64": b64(SHADOW)}]}
    auth = {"authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"}
    worker = "shadow" + hashlib.sha256(name.encode()).hexdigest()[:8]
    base = f"/v1/namespaces/{ATTACKER}/workers/{worker}"
    async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
        r = await client.post(f"{base}/versions", json=payload, headers=auth)
        if r.status_code < 300:
            done = await client.post(f"{base}/promote", headers=auth,
                                     json={"version_id": r.json()["version_id"]})
            assert done.status_code < 300, done.text
    if r.status_code < 300:
        # Accepted: then the platform's module is the one the tenant imports.
        got = ""
        for _ in range(40):
            got = (await walls.attack(worker, "/", timeout=30)).text
            if "worker_not_found" not in got:
                break
            await asyncio.sleep(0.25)
        assert got == "fake undefined", (name, got)
    else:
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] in ("reserved_name", "invalid_bundle"), r.text
    await victim_unchanged(walls, scene)
