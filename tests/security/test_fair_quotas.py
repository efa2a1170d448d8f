"""Noisy neighbour, the control plane's state: one namespace must not grow it without
bound.

Every record a tenant creates (workers, versions, secrets, host claims, KV
namespaces, R2 buckets, D1 databases and their backups, queues) stays in the
projections, is re-folded at every rebuild, and most hold files or blobs. Before the
quotas a deployer token scoped to one namespace could create them without end (this
module's attacks all succeeded past every bound below). Now each create path refuses
past its quota with 409 `quota_exceeded`, writes nothing, and frees a place when one
is deleted; the victim, counted on its own, is unaffected.

The platform runs with small quotas (`WDL_QUOTA_*`) so the attacks stay short.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security

QUOTA = 3  # each kind's quota on this platform (the victim already holds one of some)
WORKER = 'export default { fetch() { return new Response("w"); } };\n'


@pytest.fixture(scope="module")
def walls_env() -> dict[str, str]:
    kinds = ("WORKERS", "VERSIONS", "SECRETS", "HOSTS", "KV", "R2", "D1", "QUEUES",
             "D1_BACKUPS")
    return {f"WDL_QUOTA_{kind}": str(QUOTA) for kind in kinds}


def _api(walls: Walls, who: str = "attacker") -> httpx.AsyncClient:
    actor = walls.attacker if who == "attacker" else walls.admin
    return httpx.AsyncClient(base_url=walls.api, timeout=60, headers={
        "authorization": f"Bearer {actor.env['WDL_TOKEN']}"})


def _refused(r: httpx.Response, setting: str) -> None:
    assert r.status_code == 409, r.text
    body = r.json()["error"]
    assert body["code"] == "quota_exceeded", body
    assert setting in body["message"] and f"={QUOTA}" in body["message"], body


async def _count(api: httpx.AsyncClient, path: str) -> int:
    r = await api.get(path)
    assert r.status_code == 200, r.text
    items: Any = r.json()
    return len(items["items"] if isinstance(items, dict) else items)


async def test_resources_stop_at_their_quota_and_a_delete_frees_a_place(walls: Walls) -> None:
    base = f"/v1/namespaces/{ATTACKER}"
    async with _api(walls) as api:
        for path, body in ((f"{base}/kv", "name"), (f"{base}/r2", "name"),
                           (f"{base}/d1", "name"), (f"{base}/queues", "name")):
            for i in range(QUOTA):
                r = await api.post(path, json={body: f"q-{i}"})
                assert r.status_code == 201, (path, r.text)
            r = await api.post(path, json={body: "one-too-many"})
            _refused(r, "WDL_QUOTA_")
            assert await _count(api, path) == QUOTA  # the refusal wrote nothing
            assert (await api.delete(f"{path}/q-0")).status_code == 200
            assert (await api.post(path, json={body: "one-too-many"})).status_code == 201

        # Backups: a blob each.
        for _ in range(QUOTA):
            assert (await api.post(f"{base}/d1/q-1/backups")).status_code == 201
        _refused(await api.post(f"{base}/d1/q-1/backups"), "WDL_QUOTA_D1_BACKUPS")

        # Host claims.
        for i in range(QUOTA):
            r = await api.post(f"{base}/hosts", json={"pattern": f"h{i}.attacker.test"})
            assert r.status_code == 200, r.text
        _refused(await api.post(f"{base}/hosts", json={"pattern": "h9.attacker.test"}),
                 "WDL_QUOTA_HOSTS")
        # Claiming one already held is no new claim.
        assert (await api.post(f"{base}/hosts",
                               json={"pattern": "h0.attacker.test"})).status_code != 409


async def test_workers_and_secrets_stop_at_their_quota_and_versions_are_pruned(
        walls: Walls) -> None:
    attacker = walls.attacker
    for i in range(QUOTA):
        await attacker.deploy_js(f"w{i}", WORKER)
    refused = await attacker.deploy(attacker.project("w9", WORKER), ok=False)
    assert refused.code != 0 and "quota_exceeded" in refused.text, refused.text
    assert "WDL_QUOTA_WORKERS=3" in refused.text

    # w0 has one version. Past the version quota a deploy is not refused (Cloudflare
    # never refuses one for its history): the oldest version that neither serves nor is
    # the rollback target is deleted, so the worker keeps QUOTA versions.
    for _ in range(QUOTA + 2):
        result = (await attacker.deploy(attacker.project("w0", WORKER))).json()
    async with _api(walls) as api:
        versions = (await api.get(f"/v1/namespaces/{ATTACKER}/workers/w0/versions")).json()
        items = versions["items"] if isinstance(versions, dict) else versions
        live = [v for v in items if not v.get("deleted")]
        assert len(live) == QUOTA, items
        assert result["pruned_version"] and result["pruned_version"] not in {
            v["version_id"] for v in live}
        # The deployer's rollback target survives the pruning.
        worker = (await api.get(f"/v1/namespaces/{ATTACKER}/workers/w0")).json()
        assert worker["previous_version"] in {v["version_id"] for v in live}

        secrets = f"/v1/namespaces/{ATTACKER}/workers/w1/secrets"
        for i in range(QUOTA):
            r = await api.put(f"{secrets}/S{i}", json={"value": "x"})
            assert r.status_code == 200, r.text
        _refused(await api.put(f"{secrets}/S9", json={"value": "x"}), "WDL_QUOTA_SECRETS")
        # Replacing a secret is no new secret.
        assert (await api.put(f"{secrets}/S0", json={"value": "y"})).status_code == 200

    # The victim counts on its own: it still deploys.
    victim = walls.admin
    deployed = await victim.wdl("deploy", str(victim.project("other", WORKER)), "--ns", VICTIM,
                                "--json")
    assert deployed.json()["version_id"]
    await walls.assert_victim_intact()
