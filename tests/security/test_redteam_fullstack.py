"""Red team, what issue 24 added (binding registry, routes and `workers_dev`, Tail
Workers, rate limits, version metadata, WebSockets through the gateway).

The attacker holds a deployer token scoped to its namespace and drives the control API
straight (the wall itself, not the CLI's checks) and the gateway. The scene is
test_host_walls.py's: the victim's hosts `vault.victim.test` and `shop.victim.test` are
claimed and proven. Every attack states its bound in seconds; a refused attack
changes nothing (no version, no host event, the victim whole).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from redis.asyncio import Redis
from websockets.asyncio.client import ClientConnection, connect

from tests.dns import TxtZone
from tests.security import test_host_walls as host_walls
from tests.security.rig import ATTACKER, VICTIM, Actor, Walls
from tests.security.test_availability_walls import Healthy
from tests.security.test_host_walls import assert_victim_serves, host_events, host_table

# test_host_walls.py's scene (victim's hosts proven on a loopback DNS server), shared.
zone, walls_env, scene = host_walls.zone, host_walls.walls_env, host_walls.scene

pytestmark = pytest.mark.security

PLAIN_JS = 'export default { fetch() { return new Response("attacker"); } };\n'


def _module(js: str) -> list[dict[str, str]]:
    return [{"name": "index.js", "type": "esm",
             "content_b64": base64.b64encode(js.encode()).decode()}]


def _body(js: str = PLAIN_JS, **extra: Any) -> dict[str, Any]:
    return {"main_module": "index.js", "compatibility_date": "2025-11-17",
            "modules": _module(js), **extra}


@contextlib.asynccontextmanager
async def _api(walls: Walls, token: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
    token = token or walls.attacker.env["WDL_TOKEN"]
    async with httpx.AsyncClient(base_url=walls.api, timeout=60, headers={
            "authorization": f"Bearer {token}"}) as client:
        yield client


async def _deploy(walls: Walls, worker: str, body: dict[str, Any], *,
                  ns: str = ATTACKER, token: str | None = None) -> httpx.Response:
    async with _api(walls, token) as client:
        return await client.post(f"/v1/namespaces/{ns}/workers/{worker}/versions",
                                 params={"promote": "true"}, json=body)


async def _versions(walls: Walls, worker: str) -> int:
    async with _api(walls) as client:
        r = await client.get(f"/v1/namespaces/{ATTACKER}/workers/{worker}/versions")
    if r.status_code == 404:
        return 0
    assert r.status_code == 200, r.text
    return len(r.json())


def _refused(r: httpx.Response) -> bool:
    return r.status_code in (400, 409, 422)


# --- 1. the binding registry ---------------------------------------------------------

def _b(name: str, kind: str, **fields: str) -> dict[str, str]:
    return {"name": name, "kind": kind, **fields}


# Every binding the attacker may send: (what it tries, body fields). All refused.
ODD_BINDINGS: list[tuple[str, dict[str, Any]]] = [
    # Names of the platform's own env entries (tenantEnv, shim.js), in any case.
    ("__WDL_INFO", {"bindings": [_b("__WDL_INFO", "json", value='{"X": {"scope": "victim"}}')]}),
    ("__WDL_BINDINGS", {"bindings": [_b("__WDL_BINDINGS", "json", value='{"X": "kv"}')]}),
    ("__wdl_bindings", {"bindings": [_b("__wdl_bindings", "text", value="x")]}),
    ("__Wdl_Info var", {"vars": {"__Wdl_Info": "{}"}}),
    ("__WDL_BINDINGS var", {"vars": {"__WDL_BINDINGS": "{}"}}),
    ("_cf_ prefix", {"bindings": [_b("_cf_x", "text", value="x")]}),
    # The same name twice, and a binding named like a var.
    ("twice", {"bindings": [_b("X", "text", value="a"), _b("X", "text", value="b")]}),
    ("var and binding", {"vars": {"X": "a"}, "bindings": [_b("X", "text", value="b")]}),
    # Kinds that do not exist, or spelled otherwise.
    ("kind admin", {"bindings": [_b("X", "admin")]}),
    ("kind KV", {"bindings": [_b("X", "KV", target="vault-kv")]}),
    ("kind empty", {"bindings": [_b("X", "")]}),
    ("extra field", {"bindings": [{**_b("X", "text", value="x"), "props": {"namespace": VICTIM}}]}),
    # Fields a kind does not use, aimed at the victim.
    ("kv namespace", {"bindings": [_b("X", "kv", target="vault-kv", namespace=VICTIM)]}),
    ("d1 namespace", {"bindings": [_b("X", "d1", target="vault-db", namespace=VICTIM)]}),
    ("r2 namespace", {"bindings": [_b("X", "r2", target="vault-files", namespace=VICTIM)]}),
    ("queue namespace", {"bindings": [_b("X", "queue", target="q", namespace=VICTIM)]}),
    ("do namespace", {"bindings": [_b("X", "durable_object", target="Safe", value="vault",
                                      namespace=VICTIM)]}),
    ("ratelimit namespace", {"bindings": [_b("X", "ratelimit", target="1", value="3/60",
                                             namespace=VICTIM)]}),
    ("text entrypoint", {"bindings": [_b("X", "text", value="x", entrypoint="Admin")]}),
    # The victim's resources by their names (none of them exists in the attacker's
    # namespace): the API checks every resource kind's target, d1 and queue too.
    ("victim's kv", {"bindings": [_b("X", "kv", target="vault-kv")]}),
    ("victim's r2", {"bindings": [_b("X", "r2", target="vault-files")]}),
    ("victim's d1", {"bindings": [_b("X", "d1", target="vault-db")]}),
    ("victim's d1 by path", {"bindings": [_b("X", "d1", target="victim/vault-db")]}),
    ("victim's d1 by ..", {"bindings": [_b("X", "d1", target="../victim/vault-db")]}),
    ("a queue", {"bindings": [_b("X", "queue", target="vault-queue")]}),
    ("queue by path", {"bindings": [_b("X", "queue", target="victim/vault-queue")]}),
    # Another namespace's worker or class.
    ("service ungranted", {"bindings": [_b("X", "service", target="vault", namespace=VICTIM)]}),
    ("service ns/worker", {"bindings": [_b("X", "service", target="victim/vault")]}),
    ("do victim/script", {"bindings": [_b("X", "durable_object", target="Safe",
                                          value="victim/vault")]}),
    ("do ns:script", {"bindings": [_b("X", "durable_object", target="Safe",
                                      value="victim:vault")]}),
    ("do odd class", {"bindings": [_b("X", "durable_object", target="Safe/../x")]}),
    ("service odd entrypoint", {"bindings": [_b("X", "service", target="thief",
                                                entrypoint="__WdlTail")]}),
    ("version_metadata target", {"bindings": [_b("X", "version_metadata", target=VICTIM)]}),
    ("version_metadata value", {"bindings": [_b("X", "version_metadata",
                                                value='{"id": "forged"}')]}),
    ("worker_loader namespace", {"bindings": [_b("X", "worker_loader", namespace=VICTIM)]}),
    ("workflow namespace", {"bindings": [_b("X", "workflow", target="flow", entrypoint="Flow",
                                            namespace=VICTIM)]}),
    ("workflow runner class", {"bindings": [_b("X", "workflow", target="flow",
                                               entrypoint="__WdlWorkflows")]}),
    # Not a plain key of a JavaScript object (tenantEnv assigns env[name]).
    ("__proto__ binding", {"bindings": [_b("__proto__", "service", target="thief")]}),
    ("__proto__ var", {"vars": {"__proto__": "x"}}),
]


async def test_odd_bindings_are_refused_and_change_nothing(walls: Walls) -> None:
    """Bound: 40 API calls, each well under 5 s."""
    accepted = []
    for what, fields in ODD_BINDINGS:
        r = await _deploy(walls, "oddbind", _body(**fields))
        if not _refused(r):
            accepted.append((what, r.status_code, r.text[:300]))
    assert accepted == [], accepted
    assert await _versions(walls, "oddbind") == 0
    await walls.assert_victim_intact()


REACH = """\
export default {
  async fetch(request, env) {
    const out = {};
    const keys = Object.getOwnPropertyNames(env).sort();
    out.keys = keys;
    out.proto = Object.getPrototypeOf(env) === Object.prototype;
    for (const [name, call] of [
      ["do", async () => JSON.stringify(await env.SAFE.getByName("s").get())],
      ["svc", async () => await (await env.VAULT.fetch("http://x/state")).text()],
    ]) {
      try { out[name] = await call(); } catch (e) { out[name] = "error: " + e.message; }
    }
    return Response.json(out);
  },
};
"""


async def test_do_and_service_bindings_named_like_the_victims_reach_only_the_attacker(
        walls: Walls) -> None:
    """A Durable Object binding to `Safe` of script `vault` and a service binding to
    `vault`: the names are the victim's, the namespace is the attacker's (the platform
    sets it), so neither reaches the victim's object or worker. Bound: 1 deploy + 1
    request, 30 s."""
    r = await _deploy(walls, "reach", _body(REACH, bindings=[
        _b("SAFE", "durable_object", target="Safe", value="vault"),
        _b("VAULT", "service", target="vault")]))
    assert r.status_code == 201, r.text
    got = (await walls.attack("reach")).json()
    assert "victim" not in str(got), got
    assert got["do"].startswith("error:"), got
    assert got["svc"].startswith("error:") or "worker_not_found" in got["svc"], got
    assert got["proto"] is True and got["keys"] == ["SAFE", "VAULT"], got
    await walls.assert_victim_intact()


# --- 2. routes and workers_dev -------------------------------------------------------

PLATFORM_ROUTES = [
    "victim.workers.local./*", "VICTIM.WORKERS.LOCAL/*", "x.victim.workers.local/*",
    "vault.victim.workers.local/*", "attacker.workers.local/*", "a.b.workers.local/*",
    {"pattern": "victim.workers.local", "custom_domain": True},
    {"pattern": "victim.workers.local/*", "zone_name": "workers.local"},
]


async def test_routes_on_platform_and_namespace_hosts_are_refused(scene: Walls) -> None:
    """Bound: 8 API calls + the host table, 30 s."""
    before = (await host_events(scene), await host_table(scene))
    accepted = []
    for route in PLATFORM_ROUTES:
        r = await _deploy(scene, "thief", _body(routes=[route]))
        if not _refused(r):
            accepted.append((route, r.status_code, r.text[:200]))
    assert accepted == [], accepted
    too_many = await _deploy(scene, "thief", _body(
        routes=[f"r{i}.attacker.test/*" for i in range(10_000)]))
    assert too_many.status_code in (400, 422), too_many.text[:300]
    assert (await host_events(scene), await host_table(scene)) == before
    assert await _versions(scene, "thief") == 0
    await assert_victim_serves(scene)


async def test_workers_dev_false_of_a_same_named_worker_takes_down_only_itself(
        scene: Walls) -> None:
    """The attacker's `vault` with `workers_dev = false`: the victim's `vault` still
    serves on its namespace URL and its hosts. Bound: 1 deploy + 9 requests, 30 s."""
    r = await _deploy(scene, "vault", _body(workers_dev=False))
    assert r.status_code == 201, r.text
    off = await scene.attack("vault")
    assert (off.status_code, off.json()["error"]) == (404, "workers_dev_disabled"), off.text
    r = await scene.get(scene.host(VICTIM), "/vault/")
    assert (r.status_code, r.text) == (200, "vault"), r.text
    await assert_victim_serves(scene)
    await scene.assert_victim_intact()


async def test_a_route_race_with_the_victim_leaves_one_owner(scene: Walls) -> None:
    """The victim and the attacker deploy the same fresh host at once, 5 times: each
    host ends with exactly one namespace, and a deploy whose claim lost says so (no
    2xx for both). Bound: 10 concurrent deploys, 60 s."""
    admin_token = scene.admin.env["WDL_TOKEN"]
    for i in range(5):
        host = f"race{i}.contested.test"
        theirs, ours = await asyncio.gather(
            _deploy(scene, "racer", _body(routes=[f"{host}/*"]), ns=VICTIM, token=admin_token),
            _deploy(scene, "racer", _body(routes=[f"{host}/*"])))
        table = await host_table(scene)
        holders = [ns for ns in (VICTIM, ATTACKER)
                   if any(c["pattern"].startswith(host) for c in table[ns])]
        assert len(holders) == 1, (host, holders, table)
        winner = {VICTIM: theirs, ATTACKER: ours}[holders[0]]
        loser = ours if winner is theirs else theirs
        assert winner.status_code == 201, winner.text
        assert loser.status_code in (409,), (loser.status_code, loser.text[:300])
    await assert_victim_serves(scene)


async def test_a_route_squatter_loses_the_host_and_cannot_redeploy_it(
        scene: Walls, zone: TxtZone) -> None:
    """The attacker's deploy routes a host nobody holds yet; its DNS owner (the victim)
    proves it: the attacker's route claim is gone, and redeploying the same config (the
    stale route) is refused and serves nothing of the attacker's. Bound: 4 deploys,
    20 s."""
    squat = "routesquat.victim.test"
    r = await _deploy(scene, "squatter", _body(routes=[f"{squat}/*"]))
    assert r.status_code == 201, r.text
    host_walls.publish(zone, squat, VICTIM)
    await scene.admin.wdl("hosts", "verify", squat, "--ns", VICTIM)
    listed = (await scene.admin.wdl("hosts", "list", "--ns", ATTACKER, "--json")).json()
    assert [row for row in listed if row["pattern"].startswith(squat)] == [], listed
    again = await _deploy(scene, "squatter", _body(routes=[f"{squat}/*"]))
    assert (again.status_code, again.json()["error"]["code"]) == (409, "host_claimed"), \
        again.text
    await scene.admin.wdl("hosts", "claim", squat, "--ns", VICTIM, "--worker", "vault")
    for path in ("/", "/x", "/squatter/"):
        answer = await scene.get(squat, path)
        assert (answer.status_code, answer.text) == (200, "vault"), (path, answer.text)
    await assert_victim_serves(scene)


# --- 5. version metadata ---------------------------------------------------------------

ODD_TAGS: list[dict[str, str]] = [
    {"tag": "\x1b[31mred"}, {"tag": "a\nb"}, {"tag": "a\rb"}, {"tag": "x\x00y"},
    {"tag": "\u202eevil"}, {"tag": "zero\u200bwidth"}, {"tag": "t" * 26},
    {"message": "m" * 101}, {"message": "line\nforged: admin promoted"},
    {"message": "\x07bell"}, {"message": "\u2028sep"}, {"message": "\ufeffbom"},
    {"tag": "\ud800"},
]


async def test_odd_tags_and_messages_are_refused(walls: Walls) -> None:
    """Control characters, bidi overrides, zero-width and line separators, oversize: all
    refused before anything is written; a printable Unicode tag is kept as it is.
    Bound: 14 API calls, 30 s."""
    accepted = []
    for fields in ODD_TAGS:
        try:
            r = await _deploy(walls, "tagged", _body(**fields))
        except UnicodeEncodeError:
            continue  # a lone surrogate cannot even be sent as UTF-8
        if not _refused(r):
            accepted.append((fields, r.status_code, r.text[:200]))
    assert accepted == [], accepted
    assert await _versions(walls, "tagged") == 0
    r = await _deploy(walls, "tagged", _body(tag="v1 café ✓", message="naïve — ok"))
    assert r.status_code == 201, r.text
    async with _api(walls) as client:
        listed = (await client.get(f"/v1/namespaces/{ATTACKER}/workers/tagged/versions")).json()
    assert [(v.get("tag"), v.get("message")) for v in listed] == [("v1 café ✓", "naïve — ok")]


# --- 4. rate limits --------------------------------------------------------------------

async def test_odd_ratelimit_values_are_refused(walls: Walls) -> None:
    """Bound: 12 API calls, 30 s."""
    accepted = []
    for value in ("0/60", "-1/60", "1/30", "1e3/60", "3/60/1", "3.5/60", " 3/60", "3 /60",
                  "1000000001/60", "99999999999999999999/60", "3/", "/60"):
        r = await _deploy(walls, "oddrl", _body(bindings=[_b("RL", "ratelimit", target="1",
                                                             value=value)]))
        if not _refused(r):
            accepted.append((value, r.status_code, r.text[:200]))
    assert accepted == [], accepted
    assert await _versions(walls, "oddrl") == 0


RL_MANY = """\
export default {
  async fetch(request, env) {
    const n = Number(new URL(request.url).searchParams.get("n"));
    const out = await Promise.all(
      Array.from({ length: n }, (_, i) => env.RL.limit({ key: "k" + i + Math.random() })));
    return Response.json(out.filter((r) => r.success).length);
  },
};
"""


async def test_many_ratelimit_keys_expire(walls: Walls) -> None:
    """One request makes 300 counters: each is stored with an expiry of at most two
    periods (the store never keeps a counter a window past its use). Bound: 30 s."""
    r = await _deploy(walls, "rlmany", _body(RL_MANY, bindings=[
        _b("RL", "ratelimit", target="77", value="5/10")]))
    assert r.status_code == 201, r.text
    answer = await walls.attack("rlmany", params={"n": "300"})
    # 5 per key and period, 300 keys: every call passes (each key is its own counter).
    assert (answer.status_code, answer.json()) == (200, 300), answer.text
    if walls.kind == "dev":
        return  # dev's MemoryRatelimitStore keeps one window only (tests/unit)
    store = walls.extra["platform"].data.ratelimit
    redis = Redis.from_url(store.url)
    try:
        keys = [k async for k in redis.scan_iter(match=f"{store.prefix}{ATTACKER}:77:10:*",
                                                 count=1000)]
        assert len(keys) == 300, len(keys)
        ttls = {await redis.ttl(k) for k in keys}
    finally:
        await redis.aclose()
    assert all(0 < t <= 20 for t in ttls), ttls


# --- 3. Tail Workers ---------------------------------------------------------------------

LOOP_PRODUCER = 'export default { fetch() { return new Response("a"); } };\n'
# The same producer as a WorkerEntrypoint class with an RPC method.
LOOP_RPC_PRODUCER = """\
import { WorkerEntrypoint } from "cloudflare:workers";
export default class extends WorkerEntrypoint {
  fetch() { return new Response("c"); }
  ping() { return "pong"; }
}
"""
# Each delivery makes two more invocations of its producer (over fetch, or RPC with
# ?rpc), and keeps what they answered.
LOOP_TAIL = """\
export default {
  async tail(events, env) {
    for (const e of events) await env.LOG.put("event:" + crypto.randomUUID(), e.scriptName);
    const call = env.RPC ? () => env.A.ping() : async () => (await env.A.fetch("http://a/")).text();
    for (const answer of await Promise.all([call(), call()])) {
      await env.LOG.put("answer:" + answer, "1");
    }
  },
  async fetch(request, env) {
    const names = [];
    let cursor;
    do {
      const page = await env.LOG.list({ cursor });
      names.push(...page.keys.map((k) => k.name));
      cursor = page.list_complete ? undefined : page.cursor;
    } while (cursor);
    return Response.json({ events: names.filter((n) => n.startsWith("event:")).length,
                           answers: names.filter((n) => n.startsWith("answer:")) });
  },
};
"""


async def test_a_tail_worker_calling_its_producer_does_not_loop(walls: Walls) -> None:
    """`loopa` names `loopb` its tail consumer; `loopb`'s tail() calls `loopa` twice per
    delivery (likewise `loopc`/`loopd` over RPC). One request used to become an endless
    stream of invocations (measured: 2,589 events after 4 s, 4,826 after 8 s); now
    each tail worker gets the one event, and its calls are answered. Bound: the count
    must stop growing within 10 s."""
    attacker = walls.attacker
    for tail, producer, code, rpc in (("loopb", "loopa", LOOP_PRODUCER, ""),
                                      ("loopd", "loopc", LOOP_RPC_PRODUCER, "true")):
        await attacker.deploy(attacker.project(tail, LOOP_TAIL, (
            f'[vars]\nRPC = "{rpc}"\n'
            f'[[kv_namespaces]]\nbinding = "LOG"\nid = "{tail}-log"\n'
            f'[[services]]\nbinding = "A"\nservice = "{producer}"\n')))
        await attacker.deploy(attacker.project(
            producer, code, f'tail_consumers = [{{ service = "{tail}" }}]\n'))
        assert (await walls.attack(producer, "/first")).status_code == 200

    async def seen(tail: str) -> dict[str, Any]:
        r = await walls.attack(tail)
        assert r.status_code == 200, r.text
        got: dict[str, Any] = r.json()
        return got

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if all([(await seen(t))["answers"] for t in ("loopb", "loopd")]):
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(3)
    first = {t: await seen(t) for t in ("loopb", "loopd")}
    await asyncio.sleep(3)
    second = {t: await seen(t) for t in ("loopb", "loopd")}
    assert first == second == {"loopb": {"events": 1, "answers": ["answer:a"]},
                               "loopd": {"events": 1, "answers": ["answer:pong"]}}, \
        (first, second)
    await walls.assert_victim_intact()


HANG_TAIL = """\
export default { async tail() { await new Promise(() => {}); },
                 fetch() { return new Response("h"); } };
"""
NOISY = """\
export default { fetch(request) { console.log("x".repeat(16000)); return new Response("n"); } };
"""
VICTIM_TAIL = """\
export default {
  async tail(events, env) {
    for (const e of events) await env.LOG.put(new URL(e.event.request.url).pathname, "1");
  },
  async fetch(request, env) {
    return Response.json((await env.LOG.list()).keys.map((k) => k.name).sort());
  },
};
"""


async def test_a_tail_worker_that_never_returns_costs_others_nothing(walls: Walls) -> None:
    """The attacker's tail() never returns and its noisy producer (16 KB of console text
    per request) gets 300 requests: the attacker's queue fills and drops; the victim's
    own producer -> tail worker pair keeps delivering, and the victim's requests stay
    fast. Bound: 300 requests + delivery within 15 s."""
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    await victim.deploy(victim.project("vt2", VICTIM_TAIL,
                                       '[[kv_namespaces]]\nbinding = "LOG"\nid = "vt2-log"\n'))
    await victim.deploy(victim.project("vp2", LOOP_PRODUCER,
                                       'tail_consumers = [{ service = "vt2" }]\n'))
    attacker = walls.attacker
    await attacker.deploy(attacker.project("hanger", HANG_TAIL))
    await attacker.deploy(attacker.project("noisy", NOISY,
                                           'tail_consumers = [{ service = "hanger" }]\n'))
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=walls.gateway, timeout=30, limits=limits) as client:
        async def noise(i: int) -> int:
            r = await client.get(f"/noisy/{i}", headers={"host": walls.host(ATTACKER)})
            return r.status_code
        codes = await asyncio.gather(*(noise(i) for i in range(300)))
    assert set(codes) == {200}, set(codes)
    started = time.monotonic()
    for i in range(3):
        r = await walls.get(walls.host(VICTIM), f"/vp2/v{i}", timeout=2)
        assert r.status_code == 200, r.text
    assert time.monotonic() - started < 3
    want = ["/v0", "/v1", "/v2"]
    deadline = time.monotonic() + 15
    got: list[str] = []
    while time.monotonic() < deadline:
        got = (await walls.get(walls.host(VICTIM), "/vt2/")).json()
        if got == want:
            break
        await asyncio.sleep(0.3)
    assert got == want, got
    await walls.assert_victim_intact()


# --- 6. WebSockets through the gateway ----------------------------------------------------

ECHO = """\
export default {
  async fetch(request) {
    if (request.headers.get("upgrade") !== "websocket") return new Response("http");
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.addEventListener("message", (event) => server.send(event.data));
    return new Response(null, { status: 101, webSocket: client });
  },
};
"""


async def _open_ws(walls: Walls, ns: str, worker: str) -> ClientConnection:
    parts = urlsplit(walls.gateway)
    sock = socket.create_connection((parts.hostname, parts.port))
    return await connect(f"ws://{ns}.workers.local/{worker}/socket", sock=sock,
                         open_timeout=20, close_timeout=1)


async def _ask(ws: ClientConnection, message: str) -> str:
    await ws.send(message)
    return str(await asyncio.wait_for(ws.recv(), 10))


async def test_many_sockets_of_one_tenant_do_not_starve_another(walls: Walls) -> None:
    """The attacker holds 200 open sockets (echoing): the victim's requests and a
    victim socket are still answered, each within 2 s. Bound: 60 s."""
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    await victim.deploy_js("vecho", ECHO)
    await walls.attacker.deploy_js("echo", ECHO)
    sockets: list[ClientConnection] = []
    try:
        for _ in range(200):
            sockets.append(await _open_ws(walls, ATTACKER, "echo"))
        for ws in sockets[::20]:
            assert await _ask(ws, "hold") == "hold"
        started = time.monotonic()
        r = await walls.get(walls.host(VICTIM), "/vault/", timeout=2)
        assert (r.status_code, r.text) == (200, "vault")
        mine = await asyncio.wait_for(_open_ws(walls, VICTIM, "vecho"), 2)
        assert await _ask(mine, "victim") == "victim"
        assert time.monotonic() - started < 4
        sockets.append(mine)
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    await walls.assert_victim_intact()


# --- 3b. a Tail Worker that spins (last: it gets a version quarantined) ---------------------

SLOW = """\
export default { async fetch() { await new Promise((r) => setTimeout(r, 3000));
                                 return new Response("slow"); } };
"""
SPIN_TAIL = """\
export default {
  async tail(events, env) { await env.LOG.put("started", "yes"); while (true) {} },
  async fetch(request, env) { return new Response(await env.LOG.get("started")); },
};
"""


async def test_a_spinning_tail_worker_does_not_take_the_gateway(walls: Walls) -> None:
    """A tail() that never yields: other tenants get service back within the
    availability bound (5 s), and the victim is whole. Bound: 25 s."""
    attacker = walls.attacker
    await attacker.deploy(attacker.project(
        "spinner", SPIN_TAIL, '[[kv_namespaces]]\nbinding = "LOG"\nid = "spin-log"\n'))
    await attacker.deploy(attacker.project("spun", LOOP_PRODUCER,
                                           'tail_consumers = [{ service = "spinner" }]\n'))
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    await victim.deploy_js("slow", SLOW)
    healthy = Healthy(walls)
    healthy.start()
    try:
        await asyncio.sleep(1)
        # The victim's slow requests are in flight when the spin starts: the rounds
        # before it name them (and nothing else, unless the delivery is announced).
        slow = [asyncio.create_task(walls.get(walls.host(VICTIM), "/slow/", timeout=10))
                for _ in range(3)]
        await asyncio.sleep(0.5)
        with contextlib.suppress(httpx.HTTPError):
            await walls.attack("spun", timeout=5)
        await asyncio.gather(*slow, return_exceptions=True)
        await asyncio.sleep(12)
    finally:
        gap = await healthy.stop()
    assert gap < 5.0, gap
    # The spin happened.
    started = await walls.attack("spinner")
    assert (started.status_code, started.text) == (200, "yes"), started.text
    # Blamed on the tail worker that spun, never on the victim whose request the last
    # barrier round named (before: a strike on `victim/vault`; three hold it back).
    # The delivery is announced: a strike names the tail worker, or (when the watchdog
    # finds it ambiguous) no one. Before: `victim/vault` or `victim/slow` was struck.
    strikes = (await walls.admin.wdl("quarantine", "strikes", "--json")).json()
    assert {r["namespace"] for r in strikes} <= {ATTACKER}, strikes
    await walls.assert_victim_intact()


