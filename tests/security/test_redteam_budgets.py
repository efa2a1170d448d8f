"""Red team, budgets: a namespace's subrequest budget (`wdl ns limits set --subrequests`)
holds whatever the tenant's code does to the JavaScript built-ins.

The budget is counted by the egress (platform code) by the request's name, which the
tenant shim puts on every fetch() of the default export's fetch handler
(workerd/tenant/requests.js). The shim called the built-ins as the tenant left them:
a tenant that replaced `Headers.prototype.set`, `Headers.prototype.get` or
`AsyncLocalStorage.prototype.getStore` sent every fetch unnamed, and an unnamed fetch
is not limited - the budget was gone with one line of code.
"""

from __future__ import annotations

import pytest

from tests.security.rig import ATTACKER, Walls

pytestmark = pytest.mark.security

BUDGET = 3
TRIES = 8

# {setup}: what the tenant does to the built-ins before it fetches.
PROBE = """\
import { AsyncLocalStorage } from "node:async_hooks";
{top}
export default {
  async fetch(request) {
    {setup}
    const seen = {};
    for (let i = 0; i < {tries}; i++) {
      try {
        await fetch("http://10.0.0.1/");
      } catch (e) {
        const m = String(e && e.message || e).includes("Too many subrequests")
          ? "over budget" : "refused";
        seen[m] = (seen[m] || 0) + 1;
      }
    }
    return Response.json(seen);
  },
};
""".replace("{tries}", str(TRIES))

VARIANTS = {
    "plain": ("", ""),
    "headers-set": ("", """
    const set = Headers.prototype.set;
    Headers.prototype.set = function (k, v) {
      if (String(k).toLowerCase() !== "x-wdl-request-id") return set.call(this, k, v);
    };"""),
    "headers-get": ("""
const get = Headers.prototype.get;
Headers.prototype.get = function (k) {
  return String(k).toLowerCase() === "x-wdl-request-id" ? null : get.call(this, k);
};""", ""),
    "als-getstore": ("", "AsyncLocalStorage.prototype.getStore = () => undefined;"),
    "request-global": ("", """
    globalThis.Request = class extends Request {
      get headers() { return new Headers(); }
    };"""),
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
async def test_the_subrequest_budget_holds_whatever_the_builtins_become(
        walls: Walls, variant: str) -> None:
    top, setup = VARIANTS[variant]
    await walls.attacker.deploy_js(f"budget-{variant}",
                                   PROBE.replace("{top}", top).replace("{setup}", setup))
    await walls.admin.wdl("ns", "limits", "set", "--subrequests", str(BUDGET), "--ns", ATTACKER)
    try:
        r = await walls.attack(f"budget-{variant}", "/")
        assert r.status_code == 200, r.text
        # The first BUDGET fetches pass the budget (and are refused by the egress policy:
        # a private address); the rest are over it.
        assert r.json() == {"refused": BUDGET, "over budget": TRIES - BUDGET}, r.json()
    finally:
        await walls.admin.wdl("ns", "limits", "set", "--ns", ATTACKER)
    await walls.assert_victim_intact()
