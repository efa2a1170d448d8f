"""R2 through the real binding: tenant wrapper → WdlR2 entrypoint in workerd → data routes →
store, on both backends; and the Miniflare transcript comparison.

The same conformance worker (tests/workers/r2_conformance.js) runs under Miniflare
(tests/miniflare/r2_reference.mjs) and through the rig; the transcripts must be equal
call by call, except the calls listed in KNOWN_DIFFERENCES, each explained in
docs/compatibility.md ("## R2"). A new difference fails the test.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import Endpoints
from services.r2 import R2Store
from tests.integration.r2_rig import ROOT, TOKEN, Rig, opened_store, workerd_rig

pytestmark = pytest.mark.integration

CONFORMANCE = ROOT / "tests" / "workers" / "r2_conformance.js"
REFERENCE = ROOT / "tests" / "miniflare" / "r2_reference.mjs"

# Calls whose results legitimately differ from Miniflare (docs/compatibility.md, "## R2").
KNOWN_DIFFERENCES = {
    "refuse delete 1001 keys",  # R2 caps bulk delete at 1000 keys; Miniflare does not
    "put stream of unknown length",  # workerd wants a known length; WDL streams any length
}

ISOLATION_WORKER = """
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const op = url.searchParams.get("op");
    const key = url.searchParams.get("key");
    if (op === "put") {
      await env.B.put(key, url.searchParams.get("value"));
      return new Response("ok");
    }
    if (op === "get") {
      const o = await env.B.get(key);
      return new Response(o ? await o.text() : "<null>");
    }
    if (op === "list") {
      const r = await env.B.list();
      return Response.json(r.objects.map((o) => o.key));
    }
    if (op === "stub") {
      // The wrapper keeps its stub private: nothing on the object reaches the raw binding.
      return Response.json({ keys: Object.keys(env.B), own: Object.getOwnPropertyNames(env.B) });
    }
    return new Response("?", { status: 400 });
  },
};
"""

STREAM_WORKER = """
const MiB = 1024 * 1024;
function stream(total) {
  let sent = 0;
  const chunk = new Uint8Array(MiB);
  for (let i = 0; i < chunk.length; i++) chunk[i] = i & 0xff;
  const { readable, writable } = new FixedLengthStream(total);
  (async () => {
    const w = writable.getWriter();
    while (sent < total) {
      await w.write(chunk.slice(0, Math.min(MiB, total - sent)));
      sent += MiB;
    }
    await w.close();
  })();
  return readable;
}
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const size = Number(url.searchParams.get("size"));
    if (url.searchParams.get("op") === "put") {
      const o = await env.B.put("big", stream(size));
      return Response.json({ size: o.size, etag: o.etag });
    }
    const o = await env.B.get("big");
    let n = 0;
    const reader = o.body.getReader();
    for (;;) { const { done, value } = await reader.read(); if (done) break; n += value.length; }
    return Response.json({ size: n });
  },
};
"""


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path,
                unique_name: Callable[[str], str]) -> AsyncIterator[R2Store]:
    def services() -> Endpoints:
        return request.getfixturevalue("services")  # type: ignore[no-any-return]

    async with opened_store(request.param, tmp_path, services, unique_name("r2b")) as s:
        yield s


@pytest.fixture
def workerd_bin(services: Endpoints) -> str:
    assert services.workerd_bin is not None
    return services.workerd_bin


def props(ns: str, bucket: str) -> dict[str, str]:
    return {"namespace": ns, "resource": bucket, "worker": "w", "version": "v1"}


async def _get(rig: Rig, params: dict[str, str], timeout: float = 120) -> httpx.Response:
    params = {"tenant": "t1", **params}
    async with httpx.AsyncClient(timeout=timeout) as client:
        response = await client.get(rig.url + "/", params=params)
    assert response.status_code == 200, response.text
    return response


def _miniflare_transcript() -> list[dict[str, Any]]:
    node = shutil.which("node")
    assert node is not None, "node (20+) is needed for the Miniflare reference"
    out = subprocess.run([node, str(REFERENCE), str(CONFORMANCE)], check=True,
                         capture_output=True, text=True, timeout=300, cwd=ROOT)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    return _miniflare_transcript()


async def test_transcript_matches_miniflare(store: R2Store, tmp_path: Path, workerd_bin: str,
                                            reference: list[dict[str, Any]]) -> None:
    async with workerd_rig(store, CONFORMANCE.read_text(), {"t1": {"B": props("ns1", "b1")}},
                           tmp_path, workerd_bin) as rig:
        ours = (await _get(rig, {"tenant": "t1"})).json()

    assert len(ours) >= 30
    assert [c["name"] for c in ours] == [c["name"] for c in reference]
    differing = {mine["name"] for mine, theirs in zip(ours, reference, strict=True)
                 if mine != theirs}
    unexpected = differing - KNOWN_DIFFERENCES
    details = {c["name"]: (c, r) for c, r in zip(ours, reference, strict=True)
               if c["name"] in unexpected}
    assert not unexpected, json.dumps(details, indent=1)[:6000]
    assert differing == KNOWN_DIFFERENCES, "a documented difference is gone: update the docs"


async def test_tenants_and_buckets_are_isolated(store: R2Store, tmp_path: Path,
                                                workerd_bin: str) -> None:
    bindings = {
        "t1": {"B": props("ns1", "shared-name")},
        "t2": {"B": props("ns2", "shared-name")},
        "t3": {"B": props("ns1", "other")},
    }
    async with workerd_rig(store, ISOLATION_WORKER, bindings, tmp_path, workerd_bin) as rig:
        for tenant in ("t1", "t2", "t3"):
            await _get(rig, {"tenant": tenant, "op": "put", "key": "k", "value": tenant})
        await _get(rig, {"tenant": "t1", "op": "put", "key": "../../ns2/shared-name/k",
                         "value": "escape?"})
        values = [(await _get(rig, {"tenant": t, "op": "get", "key": "k"})).text
                  for t in ("t1", "t2", "t3")]
        listed = {t: (await _get(rig, {"tenant": t, "op": "list"})).json()
                  for t in ("t1", "t2", "t3")}
        stub = (await _get(rig, {"tenant": "t1", "op": "stub"})).json()
    assert values == ["t1", "t2", "t3"]
    assert listed == {"t1": ["../../ns2/shared-name/k", "k"], "t2": ["k"], "t3": ["k"]}
    assert stub == {"keys": [], "own": []}


async def test_missing_bucket_and_missing_token_are_refused(
        store: R2Store, tmp_path: Path, workerd_bin: str) -> None:
    bindings = {"t1": {"B": props("ns1", "b")}}
    async with workerd_rig(store, ISOLATION_WORKER, bindings, tmp_path, workerd_bin) as rig, \
            httpx.AsyncClient() as client:
        gone = await client.post(rig.data_url + "/r2/ns1/gone/head", json={"key": "k"},
                                 headers={"x-wdl-internal-token": TOKEN})
        unauth = await client.post(rig.data_url + "/r2/ns1/b/head", json={"key": "k"})
    assert gone.status_code == 404 and gone.json()["error"]["code"] == "r2_bucket_not_found"
    assert unauth.status_code == 401


@pytest.mark.parametrize("size_mib", [100])
async def test_100_mib_streams_through_the_binding(store: R2Store, tmp_path: Path,
                                                   workerd_bin: str, size_mib: int) -> None:
    size = size_mib * 1024 * 1024
    headers = {"x-wdl-internal-token": TOKEN}
    bindings = {"t1": {"B": props("ns1", "big")}}
    async with workerd_rig(store, STREAM_WORKER, bindings, tmp_path, workerd_bin) as rig, \
            httpx.AsyncClient() as client:
        rss = rig.data_url + "/__rss"
        before = (await client.get(rss, params={"reset": "1"}, headers=headers)).json()
        put = (await _get(rig, {"op": "put", "size": str(size)})).json()
        got = (await _get(rig, {"op": "get", "size": str(size)})).json()
        after = (await client.get(rss, headers=headers)).json()
    assert put["size"] == size and got["size"] == size
    # The data service runs in this process: its peak resident set (VmHWM, reset just
    # before) rose by far less than the object; a buffered body would add >= 100 MiB.
    growth_mib = (after["peak_kib"] - before["rss_kib"]) / 1024
    assert growth_mib < 40, f"peak RSS grew by {growth_mib:.1f} MiB for {size_mib} MiB"
