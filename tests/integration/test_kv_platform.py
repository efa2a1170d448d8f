"""Workers KV on the whole platform: `wdl deploy` with a kv_namespaces binding, the
real gateway (bindings as ctx.exports stubs, the lead's shim), the data service,
the control API and `wdl kv key`.

The Miniflare conformance transcript runs here too, against a deployed worker.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.integration.test_kv_binding import DOCUMENTED_DIFFERENCES, miniflare_transcript
from tests.platform_stack import Stack, platform_stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
WORKER = (ROOT / "tests/workers/kv_conformance.js").read_text()
BINDING = '\n[[kv_namespaces]]\nbinding = "KV"\nid = "%s"\n'

__all__ = ["miniflare_transcript"]  # the fixture, shared with test_kv_binding


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as s:
        yield s


async def _deploy(stack: Stack, ns: str, worker: str, kv_id: str) -> None:
    project = stack.project(worker, WORKER)
    toml = project / "wrangler.toml"
    toml.write_text(toml.read_text() + BINDING % kv_id)
    await stack.deploy(ns, project)


async def _get(stack: Stack, ns: str, path: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=120) as client:
        return await client.get(stack.gateway + path, params=params,
                                headers={"host": f"{ns}.workers.local"})


async def test_deployed_worker_matches_miniflare(
        stack: Stack, miniflare_transcript: list[dict[str, Any]]) -> None:
    await stack.wdl("ns", "create", "acme")
    await _deploy(stack, "acme", "conf", "conformance")
    r = await _get(stack, "acme", "/conf/")
    assert r.status_code == 200, r.text
    ours = r.json()
    assert [c["name"] for c in ours] == [c["name"] for c in miniflare_transcript]
    differing = {mine["name"] for mine, ref in zip(ours, miniflare_transcript, strict=True)
                 if mine != ref}
    assert differing == DOCUMENTED_DIFFERENCES, json.dumps(
        [(m, ref) for m, ref in zip(ours, miniflare_transcript, strict=True)
         if m["name"] in differing - DOCUMENTED_DIFFERENCES], ensure_ascii=False, indent=1)
    bench = (await _get(stack, "acme", "/conf/bench", n="300")).json()
    print(f"\nKV get of a warm key inside the tenant isolate: {bench}", file=sys.stderr)


async def test_binding_and_cli_see_each_others_writes_and_namespaces_stay_apart(
        stack: Stack) -> None:
    for ns in ("acme", "other"):
        await stack.wdl("ns", "create", ns)
        await _deploy(stack, ns, "app", "cache")
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(stack.gateway + "/app/put", params={"key": "from-worker"},
                              content=b"written by acme", headers={"host": "acme.workers.local"})
        assert r.status_code == 204, r.text
    opts = ("--ns", "acme", "--namespace-id", "cache")
    assert await stack.wdl("kv", "key", "get", "from-worker", *opts) == "written by acme"
    await stack.wdl("kv", "key", "put", "from-cli", "hi", *opts, "--metadata", '{"by":"cli"}')
    got = (await _get(stack, "acme", "/app/get", key="from-cli")).json()
    assert got["value"] == "hi" and got["withMetadata"]["metadata"] == {"by": "cli"}
    # Same KV namespace id in another platform namespace: its own, empty data.
    other = (await _get(stack, "other", "/app/get", key="from-worker")).json()
    assert other["value"] is None and other["list"] == []
    listed = json.loads(await stack.wdl("kv", "key", "list", "--ns", "other",
                                        "--namespace-id", "cache", "--json"))
    assert listed["keys"] == []
    # A forced delete purges the data; the still-bound worker's calls then fail (once the
    # data service's resource index has seen the change: polled, not timed).
    await stack.wdl("kv", "namespace", "delete", "cache", "--ns", "acme", "--force")
    for _ in range(100):
        failed = (await _get(stack, "acme", "/app/error")).json()
        if failed != {"ok": True}:
            break
        await asyncio.sleep(0.1)
    assert failed == {"name": "Error",
                      "message": "KV GET failed: 404 KV namespace 'cache' not found"}
    await stack.wdl("kv", "namespace", "create", "cache", "--ns", "acme")
    assert json.loads(await stack.wdl("kv", "key", "list", *opts, "--json"))["keys"] == []
