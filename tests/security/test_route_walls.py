"""The Names wall for wrangler routes: a `routes` / `route` entry of a deploy is a tenant
string that becomes a host claim, so it must take nothing `wdl hosts claim` could not.

The scene is test_host_walls.py's: the victim holds and has proven `vault.victim.test`
(exact) and `shop.victim.test` (prefix); the attacker, with a deployer token scoped to
its namespace, deploys a worker `thief` whose wrangler config routes the victim's hosts
and paths in every spelling, and odd patterns (wildcards, schemes, ports, `..`, Unicode,
platform names). Each is refused with a clear code, both through `wdl deploy` (which
checks first) and straight at the control API (the wall itself); the deploy changes
nothing: no version of `thief`, no host event, the host table as it was, the victim
serving every path.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest

from tests.security import test_host_walls as host_walls
from tests.security.rig import ATTACKER, Walls
from tests.security.test_host_walls import (
    SHOP_HOST,
    VAULT_HOST,
    assert_victim_serves,
    host_events,
    host_table,
)

# test_host_walls.py's scene (victim's hosts proven on a loopback DNS server), shared.
zone, walls_env, scene = host_walls.zone, host_walls.walls_env, host_walls.scene

pytestmark = pytest.mark.security

THIEF_JS = 'export default { fetch() { return new Response("thief"); } };\n'

# Every way a wrangler route can name the victim's hosts and paths: all are the victim's.
VICTIMS_ROUTES: list[Any] = [
    f"{VAULT_HOST}/*", f"{VAULT_HOST}/login", f"{VAULT_HOST}/login*", VAULT_HOST,
    f"{SHOP_HOST}/admin*", f"{SHOP_HOST}/checkout/pay", f"{SHOP_HOST}/*",
    {"pattern": f"{SHOP_HOST}/*", "zone_name": "victim.test"},
    {"pattern": f"{SHOP_HOST}/x", "zone_id": "0123456789abcdef"},
    {"pattern": VAULT_HOST, "custom_domain": True},
    "VAULT.Victim.Test/*", f"{VAULT_HOST}./*", "\uff56\uff41\uff55\uff4c\uff54.victim.test/*",
    f"{SHOP_HOST.upper()}/checkout*",
]

# Patterns with no claim form, or naming a platform name: (pattern, accepted codes).
ODD_ROUTES: list[tuple[Any, set[str]]] = [
    ("*", {"invalid_route"}), ("*/*", {"invalid_route"}), ("*.", {"invalid_route"}),
    ("*.victim.test/*", {"invalid_route"}), ("*victim.test/*", {"invalid_route"}),
    (f"https://{VAULT_HOST}/*", {"invalid_route"}), (f"//{VAULT_HOST}/*", {"invalid_route"}),
    (f"{VAULT_HOST}:443/*", {"invalid_route"}), ("own.attacker.test:8080/*", {"invalid_route"}),
    ("own.attacker.test/a/../b*", {"invalid_route"}), ("own.attacker.test/..", {"invalid_route"}),
    ("own.attacker.test/a*b", {"invalid_route"}), ("own.attacker.test/?x=*", {"invalid_route"}),
    ("own.attacker.test/\u00e9*", {"invalid_route"}), ("own.attacker.test/a\\b", {"invalid_route"}),
    (" own.attacker.test/*", {"invalid_route"}), ("own.attacker.test/\n", {"invalid_route"}),
    ("", {"invalid_route"}), ({"pattern": "own.attacker.test/*", "zone_name": "victim.test"},
                               {"invalid_route"}),
    ({"pattern": "own.attacker.test/*", "custom_domain": True}, {"invalid_route"}),
    ("victim.workers.local/*", {"host_reserved"}), ("victim.workers.local/vault/*",
                                                    {"host_reserved"}),
    ("workers.local/*", {"host_reserved"}), ("127.0.0.1/*", {"host_reserved"}),
    ("2130706433/*", {"host_reserved"}), ("[::1]/*", {"invalid_route"}),
    ("localhost/*", {"host_reserved"}), ("metadata.google.internal/*", {"host_reserved"}),
    ("gateway/*", {"host_reserved"}), ("xn--/*", {"invalid_event"}),
    ("a..victim.test/*", {"invalid_event"}), ("-bad.attacker.test/*", {"invalid_event"}),
]


def _body(routes: list[Any]) -> dict[str, Any]:
    return {"main_module": "index.js", "compatibility_date": "2025-11-17", "routes": routes,
            "modules": [{"name": "index.js", "type": "esm",
                         "content_b64": base64.b64encode(THIEF_JS.encode()).decode()}]}


async def _post(walls: Walls, routes: list[Any]) -> httpx.Response:
    """The attacker's deploy of `thief` straight at the control API, promoted."""
    async with httpx.AsyncClient(base_url=walls.api, timeout=60, headers={
            "authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"}) as client:
        return await client.post(f"/v1/namespaces/{ATTACKER}/workers/thief/versions",
                                 params={"promote": "true"}, json=_body(routes))


def _toml(routes: list[Any]) -> str:
    def item(route: Any) -> str:
        if isinstance(route, str):
            return json.dumps(route)
        return "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in route.items()) + " }"
    return f"routes = [{', '.join(item(r) for r in routes)}]\n"


async def _nothing_changed(walls: Walls, before: tuple[Any, Any]) -> None:
    assert (await host_events(walls), await host_table(walls)) == before
    r = await walls.attack("thief")
    assert (r.status_code, r.json().get("error")) == (404, "worker_not_found"), r.text
    await assert_victim_serves(walls)


async def test_routes_on_the_victims_hosts_are_refused(scene: Walls) -> None:
    before = (await host_events(scene), await host_table(scene))
    accepted = []
    for route in VICTIMS_ROUTES:
        r = await _post(scene, [route])
        if r.status_code != 409 or r.json()["error"]["code"] != "host_claimed":
            accepted.append((route, r.status_code, r.text[:200]))
    assert accepted == [], accepted
    await _nothing_changed(scene, before)


async def test_wdl_deploy_with_the_victims_routes_is_refused(scene: Walls) -> None:
    """As a user would: the wrangler config, `wdl deploy`; the CLI provisions nothing and
    the API refuses the version."""
    before = (await host_events(scene), await host_table(scene))
    for routes in ([f"{VAULT_HOST}/*"], ["own-first.attacker.test/*", f"{SHOP_HOST}/admin*"],
                   [{"pattern": VAULT_HOST, "custom_domain": True}]):
        project = scene.attacker.project("thief", THIEF_JS, _toml(routes))
        result = await scene.attacker.deploy(project, ok=False)
        assert result.code != 0 and "host_claimed" in result.text, result.text
    # The route of the attacker's own host, listed first, was not claimed either.
    await _nothing_changed(scene, before)


async def test_odd_route_patterns_are_refused_cleanly(scene: Walls) -> None:
    before = (await host_events(scene), await host_table(scene))
    wrong = []
    for route, codes in ODD_ROUTES:
        r = await _post(scene, [route])
        code = r.json().get("error", {}).get("code") if r.status_code < 500 else None
        if r.status_code not in (400, 409) or code not in codes:
            wrong.append((route, r.status_code, r.text[:200]))
    assert wrong == [], wrong
    # A refused route among good ones refuses them all.
    r = await _post(scene, ["own-ok.attacker.test/*", "*.victim.test/*"])
    assert r.status_code == 400, r.text
    # The CLI says so before any upload.
    project = scene.attacker.project("thief", THIEF_JS, 'route = "*.victim.test/*"\n')
    result = await scene.attacker.deploy(project, ok=False)
    assert result.code == 2 and "wildcard hosts" in result.text, result.text
    await _nothing_changed(scene, before)
