"""Red team, fair shares, quotas: concurrent creates must not race past a quota.

Each create path counted what the namespace holds, then wrote its event: requests
racing past the last free place all landed (docs/security.md said "at most one over
per concurrent request" - and a tenant chooses how many requests run at once).
Measured on main with a quota of 3: 30 concurrent creates made 30 queues, 30 KV
namespaces, 30 namespace-wide secrets - ten times the quota.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.security.rig import ATTACKER, Walls

pytestmark = [pytest.mark.security,
              pytest.mark.parametrize("walls", ["servers"], indirect=True)]

QUOTA = 3
WALLS_ENV = {"WDL_QUOTA_QUEUES": str(QUOTA), "WDL_QUOTA_KV": str(QUOTA),
             "WDL_QUOTA_SECRETS": str(QUOTA)}
RACERS = 30  # concurrent creates, well inside the write rate's burst


def _create(api: httpx.AsyncClient, base: str, path: str, i: int) -> Any:
    if path == "secrets":
        return api.put(f"{base}/RACE_{i}", json={"value": "v"})
    return api.post(base, json={"name": f"race-{i}"})


@pytest.mark.parametrize("path", ["queues", "kv", "secrets"])
async def test_concurrent_creates_do_not_race_past_the_quota(walls: Walls, path: str) -> None:
    base = f"/v1/namespaces/{ATTACKER}/{path}"
    async with httpx.AsyncClient(base_url=walls.api, timeout=120, headers={
            "authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"}) as api:
        answers = await asyncio.gather(*(_create(api, base, path, i) for i in range(RACERS)))
        listed = await api.get(base)
    codes = sorted(r.status_code for r in answers)
    assert listed.status_code == 200, listed.text
    held = len(listed.json())
    assert held <= QUOTA, f"{held} {path} created by {RACERS} concurrent requests " \
                          f"(quota {QUOTA}; answers {codes})"
    assert codes.count(409) == RACERS - held, codes
