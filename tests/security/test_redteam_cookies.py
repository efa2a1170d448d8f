"""Red team, the platform domain: a namespace's worker must not set cookies for every
other namespace.

Every namespace is served at `<namespace>.<platform domain>`. A browser takes a cookie
with `Domain=<platform domain>` from any of those hosts (unless the domain is on the
Public Suffix List, as Cloudflare's workers.dev is) and sends it to *every* namespace's
host: the attacker's worker could plant a session cookie in the victim's app (cookie
tossing, session fixation) or overwrite the victim's. The gateway passed such a
`Set-Cookie` through unchanged.

The wall: on a namespace host, the gateway drops a `Set-Cookie` whose `Domain` is not
that host or under it; cookies without `Domain` (host-only) or for the namespace's own
host pass unchanged.
"""

from __future__ import annotations

import pytest

from tests.security.rig import DOMAIN, Walls

pytestmark = pytest.mark.security

TOSSER = """\
export default {
  async fetch(request) {
    const headers = new Headers({ "content-type": "text/plain" });
    for (const cookie of JSON.parse(new URL(request.url).searchParams.get("c"))) {
      headers.append("set-cookie", cookie);
    }
    return new Response("cookies", { headers });
  },
};
"""

REFUSED = [
    f"session=attacker; Domain={DOMAIN}; Path=/",
    f"session=attacker; Domain=.{DOMAIN}; Path=/; Secure",
    f"session=attacker; domain={DOMAIN.upper()}",
    f"session=attacker; Path=/; Domain=victim.{DOMAIN}",
    "session=attacker; Domain=local",
    f"session=attacker; Domain={DOMAIN}.",
]
KEPT = [
    "mine=1; Path=/; HttpOnly",
    f"mine=2; Domain=attacker.{DOMAIN}; Path=/",
    f"mine=3; Domain=.attacker.{DOMAIN}",
    "mine=4; Expires=Wed, 21 Oct 2037 07:28:00 GMT; Path=/",
]


@pytest.mark.parametrize("cookie", REFUSED)
async def test_a_namespace_sets_no_cookie_for_the_platform_domain(walls: Walls,
                                                                   cookie: str) -> None:
    await walls.attacker.deploy_js("tosser", TOSSER)
    r = await walls.attack("tosser", "/", params={"c": f'["{cookie}", "{KEPT[0]}"]'})
    assert (r.status_code, r.text) == (200, "cookies"), r.text
    assert r.headers.get_list("set-cookie") == [KEPT[0]], r.headers.get_list("set-cookie")


async def test_host_only_and_own_host_cookies_pass(walls: Walls) -> None:
    await walls.attacker.deploy_js("tosser", TOSSER)
    quoted = ", ".join(f'"{c}"' for c in KEPT)
    r = await walls.attack("tosser", "/", params={"c": f"[{quoted}]"})
    assert (r.status_code, r.text) == (200, "cookies"), r.text
    assert r.headers.get_list("set-cookie") == KEPT
    await walls.assert_victim_intact()
