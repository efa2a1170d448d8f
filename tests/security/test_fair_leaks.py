"""Small leaks of others' activity (issue 23 item 8).

* A request id is the client's choice (`X-Request-Id`): a tenant that reused another
  tenant's request id had its events listed with the victim's when an operator ran
  `wdl audit --request-id X`, as if one request had done both.
* `/v1/projections/status` answered any token with every partition's applied offsets
  and log ends: a tenant could watch the whole platform's activity (every namespace's
  event counts) by polling it.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security


async def _put_secret(walls: Walls, token: str, ns: str, name: str,
                      request_id: str) -> None:
    async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
        r = await client.put(f"/v1/namespaces/{ns}/secrets/{name}", json={"value": "v"},
                             headers={"authorization": f"Bearer {token}",
                                      "x-request-id": request_id})
        assert r.status_code == 200, r.text
        assert r.headers["x-request-id"] == request_id


async def _audit(walls: Walls, token: str, **params: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
        return await client.get("/v1/audit", params=params,
                                headers={"authorization": f"Bearer {token}"})


def _namespaces(r: httpx.Response) -> set[str | None]:
    assert r.status_code == 200, r.text
    return {item["namespace"] for item in r.json()["items"]}


async def test_a_reused_request_id_never_mixes_namespaces(walls: Walls) -> None:
    admin = walls.admin.env["WDL_TOKEN"]
    attacker = walls.attacker.env["WDL_TOKEN"]
    rid = f"shared-{uuid.uuid4().hex[:12]}"
    await _put_secret(walls, admin, VICTIM, "LEAK_A", rid)
    # The attacker learnt the victim's request id (a log line, a support ticket) and
    # sends its own request under it.
    await _put_secret(walls, attacker, ATTACKER, "LEAK_B", rid)

    # The operator's view: one request id never lists two namespaces' events as one.
    mixed = await _audit(walls, admin, request_id=rid)
    if mixed.status_code == 200:
        assert len(_namespaces(mixed)) <= 1, mixed.json()["items"]
    else:
        assert mixed.status_code == 409, mixed.text
        error = mixed.json()["error"]
        assert error["code"] == "ambiguous_request_id", error
        assert sorted(error["namespaces"]) == [ATTACKER, VICTIM], error
    assert _namespaces(await _audit(walls, admin, request_id=rid, namespace=VICTIM)) == {VICTIM}
    assert _namespaces(await _audit(walls, admin, request_id=rid,
                                    namespace=ATTACKER)) == {ATTACKER}

    # The tenant's view: no filter ever reaches another namespace's events.
    assert _namespaces(await _audit(walls, attacker, request_id=rid)) == {ATTACKER}
    for params in ({}, {"type": "secret_put"}, {"verdict": "accepted"},
                   {"actor": "admin"}, {"worker": "vault"}, {"since": 0}):
        seen = _namespaces(await _audit(walls, attacker, limit=1000, **params))
        assert seen <= {ATTACKER}, (params, seen)
    r = await _audit(walls, attacker, request_id=rid, namespace=VICTIM)
    assert r.status_code in (403, 404), r.text


async def test_projection_status_is_for_admins(walls: Walls) -> None:
    async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
        attacker = await client.get("/v1/projections/status", headers={
            "authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"})
        admin = await client.get("/v1/projections/status", headers={
            "authorization": f"Bearer {walls.admin.env['WDL_TOKEN']}"})
    assert admin.status_code == 200, admin.text
    assert attacker.status_code == 403, (attacker.status_code, attacker.text[:300])
    assert attacker.json()["error"]["code"] == "forbidden", attacker.text
    assert "admin" in attacker.json()["error"]["message"], attacker.text
