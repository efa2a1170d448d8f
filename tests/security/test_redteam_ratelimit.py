"""Red team, rate limits: one namespace's counters are its own.

A `[[ratelimits]]` binding names a `namespace_id` and the tenant picks every key, so
both are attacker-chosen. Counters are named by the platform from the caller's
namespace (props only the platform sets), the namespace_id (digits only, checked at
deploy and again by the data service) and the SHA-256 of the key (made in the
gateway), so no choice of namespace_id or key reaches another namespace's counter:
the attacker, with the victim's namespace_id and key and keys spelled like the
store's own names, exhausts only its own limit; the victim's limit is whole after.
"""

from __future__ import annotations

import base64
import hashlib

import httpx
import pytest

from services.data.app import create_data_app
from services.ratelimit.routes import ratelimit_routes
from services.ratelimit.store import MemoryRatelimitStore
from tests.integration.test_version_ratelimit_e2e import fresh_window
from tests.security.rig import ATTACKER, VICTIM, Actor, Walls

pytestmark = pytest.mark.security

LIMITER = """\
export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    let key = u.searchParams.get("key") ?? "";
    if (u.searchParams.has("repeat")) key = key.repeat(Number(u.searchParams.get("repeat")));
    if (u.searchParams.has("surrogate")) key += "\\ud800";
    const times = Number(u.searchParams.get("times") ?? "1");
    const out = [];
    for (let i = 0; i < times; i++) {
      try { out.push((await env.RL.limit({ key })).success); }
      catch (e) { out.push("refused: " + e.message); }
    }
    return Response.json(out);
  },
};
"""

TOML = """
[[ratelimits]]
name = "RL"
namespace_id = "1001"
simple = { limit = 3, period = 60 }
"""

SHARED = "shared-key"
DIGEST = hashlib.sha256(SHARED.encode()).hexdigest()
# Keys spelled as the store's counter names (docs/redis-keys.md) and as paths.
ODD_KEYS = [SHARED, "", f"{VICTIM}:1001:60:{DIGEST}", f"rl:{VICTIM}:1001:60:{DIGEST}",
            f"../{VICTIM}/1001", "{" + VICTIM + "}", "a\x00b", "*"]


async def _limit(walls: Walls, host: str, params: dict[str, str]) -> list[object]:
    r = await walls.get(host, "/limiter/", params=params)
    assert r.status_code == 200, r.text
    out: list[object] = r.json()
    return out


async def test_an_attacker_cannot_spend_the_victims_rate_limit(walls: Walls) -> None:
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    await victim.deploy_js("limiter", LIMITER, TOML)
    await walls.attacker.deploy_js("limiter", LIMITER, TOML)
    await fresh_window()
    attacker_host = walls.host(ATTACKER)
    for key in ODD_KEYS:
        # Each key is a counter of the attacker's own: 3 pass, then it is limited.
        got = await _limit(walls, attacker_host, {"key": key, "times": "5"})
        assert got == [True, True, True, False, False], (key, got)
    # A huge key (1 MiB) and a lone surrogate: hashed like any other, counted apart.
    got = await _limit(walls, attacker_host, {"key": "k", "repeat": str(1 << 20), "times": "4"})
    assert got == [True, True, True, False], got
    got = await _limit(walls, attacker_host, {"key": "s", "surrogate": "1", "times": "4"})
    assert got == [True, True, True, False], got
    # The victim's limit, same namespace_id and key, is whole: 3 pass, the 4th is limited.
    got = await _limit(walls, walls.host(VICTIM), {"key": SHARED, "times": "4"})
    assert got == [True, True, True, False], got
    await walls.assert_victim_intact()


@pytest.mark.parametrize("namespace_id", ["1001:victim", f"../{VICTIM}", "1001/victim",
                                          "{victim}", "1" * 17, ""])
async def test_a_namespace_id_is_not_a_way_into_another_namespace(walls: Walls,
                                                                  namespace_id: str) -> None:
    # Through wrangler config: refused before anything is sent.
    toml = TOML.replace('"1001"', f'"{namespace_id}"')
    result = await walls.attacker.deploy(walls.attacker.project("sneaky", LIMITER, toml),
                                         ok=False)
    assert result.code != 0 and "namespace_id" in result.text, result.text
    # Straight to the API with the attacker's token: refused, nothing written.
    module = base64.b64encode(LIMITER.encode()).decode()
    body = {"main_module": "index.js", "compatibility_date": "2025-06-01",
            "modules": [{"name": "index.js", "content_b64": module}],
            "bindings": [{"name": "RL", "kind": "ratelimit", "target": namespace_id,
                          "value": "3/60"}]}
    headers = {"authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"}
    async with httpx.AsyncClient(base_url=walls.api, timeout=30) as client:
        r = await client.post(f"/v1/namespaces/{ATTACKER}/workers/sneaky/versions", json=body,
                              headers=headers)
        assert r.status_code in (400, 422), r.text
        r = await client.get(f"/v1/namespaces/{ATTACKER}/workers/sneaky/versions",
                             headers=headers)
        assert r.status_code == 404, r.text
    await walls.assert_victim_intact()


async def test_the_data_route_names_counters_only_from_allow_listed_parts(
        walls: Walls) -> None:
    """Even with the internal token (the gateway's), the route takes a digest, digits and
    a namespace name, nothing else: a raw key or a separator never becomes a name."""
    headers = {"x-wdl-internal-token": walls.internal_token}
    good = {"key": DIGEST, "limit": 3, "period": 60}
    if walls.kind == "servers":
        client = httpx.AsyncClient(base_url=walls.internals["data"], timeout=30)
    else:
        # `wdl dev` serves its data app on no port of its own: the same app, with the
        # embedded store dev uses, in this process.
        app = create_data_app({"ratelimit": ratelimit_routes(MemoryRatelimitStore())},
                              internal_token=walls.internal_token)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                   base_url="http://data", timeout=30)
    async with client:
        r = await client.post(f"/ratelimit/{VICTIM}/1001/limit", json=good)
        assert r.status_code == 401, r.text  # no token: refused (the internal wall)
        for path, body in ((f"/ratelimit/{VICTIM}/1001/limit", {**good, "key": SHARED}),
                           (f"/ratelimit/{VICTIM}/1001:x/limit", good),
                           (f"/ratelimit/{VICTIM}:x/1001/limit", good),
                           (f"/ratelimit/{VICTIM}/1001/limit", {**good, "period": 30}),
                           (f"/ratelimit/{VICTIM}/1001/limit", {**good, "limit": -1})):
            r = await client.post(path, json=body, headers=headers)
            assert r.status_code == 400 and r.json()["code"] == "ratelimit_invalid", \
                (path, body, r.text)
