"""Workers KV through the real binding: workerd + WdlKv + the tenant wrapper + the data routes.

Runs on both stores. The conformance worker (tests/workers/kv_conformance.js)
runs here and under Miniflare (tests/miniflare/kv_reference.mjs); the two
transcripts must agree call by call, except the differences docs/compatibility.md
lists, which are named in DOCUMENTED_DIFFERENCES (so a new difference fails).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import Endpoints
from services.kv.factory import open_kv_store
from tests.integration.kv_rig import ROOT, TOKEN, KvRig, kv_rig

pytestmark = pytest.mark.integration

# Calls whose outcome legitimately differs from Miniflare; each is explained in
# docs/compatibility.md, "## KV".
DOCUMENTED_DIFFERENCES: set[str] = {
    # Miniflare answers a bare "" for an empty value instead of {value, metadata}.
    "bulk getWithMetadata empty value",
}


@pytest.fixture(scope="module")
def miniflare_transcript() -> list[dict[str, Any]]:
    out = subprocess.run(["node", str(ROOT / "tests/miniflare/kv_reference.mjs")], cwd=ROOT,
                         capture_output=True, text=True, timeout=180, check=True)
    transcript: list[dict[str, Any]] = json.loads(out.stdout)
    return transcript


@pytest.fixture(params=["redis", "sqlite"])
async def rig(request: pytest.FixtureRequest, services: Endpoints,
              tmp_path: Path) -> AsyncIterator[KvRig]:
    if request.param == "redis":
        url = f"{services.redis_url}?prefix=test-kvb-{uuid.uuid4().hex[:10]}:"
    else:
        url = f"sqlite:///{tmp_path / 'kv.sqlite'}"
    assert services.workerd_bin is not None
    async with open_kv_store(url) as store, \
            kv_rig(store, Path(services.workerd_bin), tmp_path) as r:
        yield r


def _ns() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


async def test_transcript_matches_miniflare(rig: KvRig,
                                            miniflare_transcript: list[dict[str, Any]]) -> None:
    ns = _ns()
    rig.resources.add((ns, "conformance"))
    async with httpx.AsyncClient(timeout=120) as client:
        r = await client.get(rig.tenant(ns, "conformance") + "/")
    assert r.status_code == 200, r.text
    ours: list[dict[str, Any]] = r.json()
    assert [c["name"] for c in ours] == [c["name"] for c in miniflare_transcript]
    assert len(ours) >= 40
    differing = {mine["name"] for mine, ref in zip(ours, miniflare_transcript, strict=True)
                 if mine != ref}
    unexpected = {mine["name"]: {"wdl": mine, "miniflare": ref}
                  for mine, ref in zip(ours, miniflare_transcript, strict=True)
                  if mine != ref and mine["name"] not in DOCUMENTED_DIFFERENCES}
    assert not unexpected, json.dumps(unexpected, indent=1, ensure_ascii=False)
    # A documented difference that went away must leave the list (and the docs).
    assert differing == DOCUMENTED_DIFFERENCES


async def test_expired_key_disappears(rig: KvRig) -> None:
    ns = _ns()
    rig.resources.add((ns, "kv"))
    # The test-only manipulation: an expiration in the past, straight into the store.
    await rig.store.put(ns, "kv", "old", b"v", expiration=int(time.time()) - 1,
                        metadata='{"m":1}')
    await rig.store.put(ns, "kv", "kept", b"kept")
    async with httpx.AsyncClient() as client:
        gone = (await client.get(rig.tenant(ns, "kv") + "/get", params={"key": "old"})).json()
        kept = (await client.get(rig.tenant(ns, "kv") + "/get", params={"key": "kept"})).json()
    assert gone == {"value": None, "list": [],
                    "withMetadata": {"value": None, "metadata": None, "cacheStatus": None}}
    assert kept["value"] == "kept" and kept["list"] == ["kept"]


async def test_resources_and_namespaces_are_isolated(rig: KvRig) -> None:
    a, b = _ns(), _ns()
    for pair in [(a, "one"), (a, "two"), (b, "one")]:
        rig.resources.add(pair)
    async with httpx.AsyncClient() as client:
        for ns, res, value in [(a, "one", "a1"), (a, "two", "a2"), (b, "one", "b1")]:
            r = await client.post(rig.tenant(ns, res) + "/put", params={"key": "k"},
                                  content=value)
            assert r.status_code == 204, r.text
        seen = {}
        for ns, res in [(a, "one"), (a, "two"), (b, "one")]:
            got = (await client.get(rig.tenant(ns, res) + "/get", params={"key": "k"})).json()
            seen[(ns, res)] = (got["value"], got["list"])
    assert seen == {(a, "one"): ("a1", ["k"]), (a, "two"): ("a2", ["k"]),
                    (b, "one"): ("b1", ["k"])}


async def test_missing_resource_is_refused(rig: KvRig) -> None:
    ns = _ns()
    await rig.store.put(ns, "deleted", "anything", b"left over")  # data without a resource
    async with httpx.AsyncClient() as client:
        got = (await client.get(rig.tenant(ns, "deleted") + "/error")).json()
    assert got == {"name": "Error",
                   "message": "KV GET failed: 404 KV namespace 'deleted' not found"}


async def test_stream_roundtrip_large_value(rig: KvRig) -> None:
    ns = _ns()
    rig.resources.add((ns, "kv"))
    value = bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MiB
    async with httpx.AsyncClient(timeout=60) as client:
        r = await client.post(rig.tenant(ns, "kv") + "/put", params={"key": "big"},
                              content=value)
        assert r.status_code == 204, r.text
        got = await client.get(rig.tenant(ns, "kv") + "/stream", params={"key": "big"})
    assert got.status_code == 200
    assert got.content == value
    entry = await rig.store.get(ns, "kv", "big")
    assert entry is not None and entry.value == value


async def test_data_routes_need_the_token_and_keep_resources_apart(rig: KvRig) -> None:
    a, b = _ns(), _ns()
    rig.resources.update({(a, "kv"), (b, "kv")})
    async with httpx.AsyncClient(base_url=rig.data_url + "/kv") as client:
        h = {"x-wdl-internal-token": TOKEN}
        assert (await client.get(f"/{a}/kv/v/k")).status_code == 401
        r = await client.put(f"/{a}/kv/v/k%2F%C3%A9", content=b"va", headers={
            **h, "x-kv-metadata": "%7B%22x%22%3A%22%C3%A9%22%7D"},
            params={"expiration_ttl": "120"})
        assert r.status_code == 204, r.text
        got = await client.get(f"/{a}/kv/v/k%2F%C3%A9", headers=h)
        assert got.content == b"va"
        assert got.headers["x-kv-metadata"] == "%7B%22x%22%3A%22%C3%A9%22%7D"
        assert abs(int(got.headers["x-kv-expiration"]) - (time.time() + 120)) < 30
        other = await client.get(f"/{b}/kv/v/k%2F%C3%A9", headers=h)
        assert other.status_code == 404 and other.headers["x-kv-missing"] == "1"
        listed = (await client.get(f"/{a}/kv/keys", headers=h)).json()
        assert [k["name"] for k in listed["keys"]] == ["k/é"]
        assert listed["keys"][0]["metadata"] == {"x": "é"}
        assert (await client.get(f"/{b}/kv/keys", headers=h)).json()["keys"] == []
        missing = await client.get(f"/{a}/nope/v/k", headers=h)
        assert missing.status_code == 404
        assert missing.json()["code"] == "kv_namespace_not_found"
        bad = await client.put(f"/{a}/kv/v/k", content=b"x", headers=h,
                               params={"expiration_ttl": "10"})
        assert bad.status_code == 400
        assert bad.json()["message"] == ("Invalid expiration_ttl of 10. Expiration TTL must be "
                                         "at least 60.")
        too_big = await client.put(f"/{a}/kv/v/k", headers={**h, "x-kv-metadata": "%22"
                                   + "m" * 1100 + "%22"}, content=b"x")
        assert too_big.status_code == 413
