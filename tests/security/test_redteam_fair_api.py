"""Red team, fair shares, control API: one namespace's writes must not grow the
platform's event log (and the audit, and every rebuild) as fast as the API can answer.

Every write of the control API is an event appended for good (accepted or refused by
the fold, each one an audit row too); quotas bound what a namespace *holds*, nothing
bounded how often it may *write*. A deployer token replacing one secret in a loop
appended an event of ~6 KB per request, as fast as one client could go. Measured on
main: 300 writes in a row all accepted in 1.3 s (~230 events a second).

Cloudflare's API allows 1,200 requests per 5 minutes per user; WDL bounds the writes
of a namespace that way (`WDL_API_WRITE_BURST`, `WDL_API_WRITES_PER_S`), set low here.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = [pytest.mark.security,
              pytest.mark.parametrize("walls", ["servers"], indirect=True)]

BURST = 40  # writes a namespace may make at once here (the default: 1,200)
PER_S = 1.0  # ... and then a second (the default: 4, Cloudflare's 1,200 per 5 minutes)
WALLS_ENV = {"WDL_API_WRITE_BURST": str(BURST), "WDL_API_WRITES_PER_S": str(PER_S)}
WRITES = 300


async def test_a_namespace_cannot_write_events_without_bound(walls: Walls) -> None:
    headers = {"authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"}
    accepted = refused = 0
    last = ""
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=walls.api, timeout=30, headers=headers) as api:
        for i in range(WRITES):
            r = await api.put(f"/v1/namespaces/{ATTACKER}/secrets/NOISE",
                              json={"value": f"{i:06d}" + "x" * 4000})
            if r.status_code == 429:
                refused += 1
                last = r.text
            else:
                assert r.status_code == 200, r.text
                accepted += 1
    took = time.monotonic() - started
    allowed = BURST + PER_S * took + 2  # the bucket refills while the loop runs
    assert accepted <= allowed, (
        f"{accepted} writes of one namespace accepted in {took:.1f} s (bound {BURST} at "
        f"once, then {PER_S:g} a second: {allowed:.0f})")
    assert "too_many_requests" in last and "retry" in last.lower(), last
    # Another namespace's writes are not held by the attacker's bucket.
    await walls.admin.wdl("secret", "put", "OTHER", "--ns", VICTIM, "--worker", "vault",
                          stdin="victim-other-secret")
    await walls.assert_victim_intact()
