"""Durable Objects through the real path: wrangler project -> `wdl deploy` -> gateway
(WdlDo) -> the DO host (services/objects/, workerd facets) on the real servers.

The conformance worker (tests/workers/do_conformance.js) runs here and under Miniflare
(tests/miniflare/do_reference.mjs); the two transcripts must agree call by call, except
the differences docs/compatibility.md lists ("## Durable Objects"), named in
DOCUMENTED_DIFFERENCES (so a new difference fails).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.platform_stack import Stack, platform_stack

pytestmark = pytest.mark.integration

DOCUMENTED_DIFFERENCES: set[str] = set()

COMPONENTS = frozenset({"api", "projector", "state", "data", "gateway", "objects"})

WRANGLER = """name = "{name}"
main = "src/index.js"
compatibility_date = "2025-11-17"

[[durable_objects.bindings]]
name = "OBJ"
class_name = "{cls}"
{script}
[[migrations]]
tag = "v1"
new_sqlite_classes = ["{cls}"]
"""


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=COMPONENTS) as s:
        yield s


@pytest.fixture(scope="module")
def miniflare_transcript() -> list[dict[str, Any]]:
    out = subprocess.run(["node", str(ROOT / "tests/miniflare/do_reference.mjs")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    transcript: list[dict[str, Any]] = json.loads(out.stdout)
    return transcript


def project(stack: Stack, name: str, source: str, cls: str = "Conformance",
            script: str = "") -> Path:
    directory = stack.tmp / f"{name}-{abs(hash((source, cls, script))) % 10**8}"
    (directory / "src").mkdir(parents=True, exist_ok=True)
    line = f'script_name = "{script}"\n' if script else ""
    (directory / "wrangler.toml").write_text(WRANGLER.format(name=name, cls=cls, script=line))
    (directory / "src" / "index.js").write_text(source)
    return directory


async def get(stack: Stack, ns: str, worker: str, path: str = "/") -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.get(f"{stack.gateway}/{worker}{path}",
                                headers={"host": f"{ns}.workers.local"})


async def test_transcript_matches_miniflare(stack: Stack,
                                            miniflare_transcript: list[dict[str, Any]]) -> None:
    source = (ROOT / "tests/workers/do_conformance.js").read_text()
    await stack.deploy("acme", project(stack, "conf", source), "--create-namespace")
    r = await get(stack, "acme", "conf")
    assert r.status_code == 200, r.text
    ours: list[dict[str, Any]] = r.json()
    assert [c["name"] for c in ours] == [c["name"] for c in miniflare_transcript]
    assert len(ours) >= 15
    differing = {mine["name"] for mine, ref in zip(ours, miniflare_transcript, strict=True)
                 if mine != ref}
    unexpected = {mine["name"]: {"wdl": mine, "miniflare": ref}
                  for mine, ref in zip(ours, miniflare_transcript, strict=True)
                  if mine != ref and mine["name"] not in DOCUMENTED_DIFFERENCES}
    assert not unexpected, json.dumps(unexpected, indent=1)
    assert differing == DOCUMENTED_DIFFERENCES


BOX = """
import { DurableObject } from "cloudflare:workers";
export class Box extends DurableObject {
  async put(v) { await this.ctx.storage.put("v", v); return v; }
  async get() { return (await this.ctx.storage.get("v")) ?? null; }
}
export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    try {
      const box = env.OBJ.getByName("shared");
      if (u.pathname === "/put") return Response.json(await box.put(u.searchParams.get("v")));
      if (u.pathname === "/get") return Response.json(await box.get());
      if (u.pathname === "/id") return Response.json(env.OBJ.idFromName("shared").toString());
      if (u.pathname === "/byid") {
        const id = env.OBJ.idFromString(u.searchParams.get("id"));
        return Response.json(await env.OBJ.get(id).get());
      }
    } catch (e) {
      return Response.json({ error: e.name, message: e.message });
    }
    return new Response("?", { status: 404 });
  },
};
"""
FRONT = """
export default {
  async fetch(request, env) { return Response.json(await env.OBJ.getByName("shared").get()); },
};
"""


async def test_namespaces_never_reach_each_others_objects(stack: Stack) -> None:
    await stack.deploy("nsa", project(stack, "iso", BOX, cls="Box"), "--create-namespace")
    await stack.deploy("nsb", project(stack, "iso", BOX, cls="Box"), "--create-namespace")
    assert (await get(stack, "nsa", "iso", "/put?v=secret-a")).json() == "secret-a"
    # The same worker, class and name in another namespace is another object.
    assert (await get(stack, "nsb", "iso", "/get")).json() is None
    a_id = (await get(stack, "nsa", "iso", "/id")).json()
    b_id = (await get(stack, "nsb", "iso", "/id")).json()
    assert a_id != b_id
    # A's id is refused in B (its tag names A's namespace).
    forged = (await get(stack, "nsb", "iso", f"/byid?id={a_id}")).json()
    assert forged == {"error": "TypeError",
                      "message": "Durable Object ID is not valid for this namespace."}
    assert (await get(stack, "nsa", "iso", f"/byid?id={a_id}")).json() == "secret-a"
    # script_name: another worker of the same namespace reaches the class's objects.
    front = project(stack, "front", FRONT, cls="Box", script="iso")
    await stack.deploy("nsa", front)
    assert (await get(stack, "nsa", "front")).json() == "secret-a"
    await stack.deploy("nsb", front)
    assert (await get(stack, "nsb", "front")).json() is None
    # ... and never one of another namespace: refused at deploy, nothing written.
    cross = project(stack, "front2", FRONT, cls="Box", script="nsa/iso")
    proc_err = await _deploy_error(stack, cross, "nsb")
    assert "durable_objects.bindings[0].script_name" in proc_err
    assert (await get(stack, "nsb", "front2")).status_code == 404


async def _deploy_error(stack: Stack, project_dir: Path, ns: str) -> str:
    from tests.platform_stack import WDL
    proc = await asyncio.create_subprocess_exec(
        WDL, "deploy", str(project_dir), "--ns", ns, env=stack.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode != 0
    return (out + err).decode()


async def test_the_host_refuses_forged_calls(stack: Stack) -> None:
    await stack.deploy("nsa", project(stack, "iso", BOX, cls="Box"), "--create-namespace")
    assert (await get(stack, "nsa", "iso", "/put?v=secret-a")).json() == "secret-a"
    a_id = (await get(stack, "nsa", "iso", "/id")).json()
    objects = stack.platform.objects
    assert objects is not None
    meta = {"namespace": "nsb", "script": "iso", "class_name": "Box", "id": a_id, "name": None}
    body = {"method": "get", "args": "[]"}
    async with httpx.AsyncClient(base_url=objects.url, timeout=15) as client:
        # Without the platform's token: refused before anything is read.
        r = await client.post("/__wdl/do/call", json=body,
                              headers={"x-wdl-do": json.dumps({**meta, "namespace": "nsa"})})
        assert r.status_code == 401
        # With it, but props of another namespace than the id was made for: refused.
        r = await client.post("/__wdl/do/call", json=body, headers={
            "x-wdl-internal-token": "wdl-internal-test-token", "x-wdl-do": json.dumps(meta)})
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "Durable Object ID is not valid for this namespace."
        # The wire format (workerd/gateway/do.js): method in a header, the arguments'
        # JSON as the body, the result's JSON as the answer.
        ok = await client.post("/__wdl/do/call", content="[]", headers={
            "x-wdl-internal-token": "wdl-internal-test-token", "x-wdl-do-method": "get",
            "x-wdl-do": json.dumps({**meta, "namespace": "nsa"})})
        assert ok.headers["x-wdl-do-result"] == "json"
        assert ok.json() == "secret-a"
        # A gateway of the previous release ({method, args} as the body) is still served.
        old = await client.post("/__wdl/do/call", json=body, headers={
            "x-wdl-internal-token": "wdl-internal-test-token",
            "x-wdl-do": json.dumps({**meta, "namespace": "nsa"})})
        assert old.json() == "secret-a"
        # The host remembers ids whose tag it checked: a forged scope after a good call
        # is still refused.
        r = await client.post("/__wdl/do/call", content="[]", headers={
            "x-wdl-internal-token": "wdl-internal-test-token", "x-wdl-do-method": "get",
            "x-wdl-do": json.dumps(meta)})
        assert r.status_code == 400


async def test_the_counter_example_deploys_unchanged_and_its_alarm_fires(stack: Stack) -> None:
    await stack.deploy("demo", ROOT / "examples" / "counter", "--create-namespace")
    assert (await get(stack, "demo", "counter", "/a/inc")).json() == {"count": 1, "reminders": 0}
    assert (await get(stack, "demo", "counter", "/a/remind")).json() == "reminder set"
    state: dict[str, Any] = {}
    for _ in range(200):
        state = (await get(stack, "demo", "counter", "/a")).json()
        if state["reminders"] == 1 and not state["alarmPending"]:
            break
        await asyncio.sleep(0.1)
    assert state == {"count": 1, "reminders": 1, "alarmPending": False}


KV_INSIDE = """
import { DurableObject } from "cloudflare:workers";
export class Conformance extends DurableObject {
  async remember(v) {
    await this.env.KV.put("from-object", v);
    return await this.env.KV.get("from-object");
  }
}
export default {
  async fetch(request, env) {
    const inside = await env.OBJ.getByName("k").remember("written inside");
    return Response.json([inside, await env.KV.get("from-object")]);
  },
};
"""


async def test_objects_see_the_workers_kv_binding(stack: Stack) -> None:
    directory = project(stack, "kvdo", KV_INSIDE)
    toml = directory / "wrangler.toml"
    toml.write_text(toml.read_text() + '\n[[kv_namespaces]]\nbinding = "KV"\nid = "do-kv"\n')
    await stack.deploy("acme", directory, "--create-namespace")
    r = await get(stack, "acme", "kvdo")
    assert r.json() == ["written inside", "written inside"], r.text
