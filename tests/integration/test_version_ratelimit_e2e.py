"""`version_metadata` and `[[ratelimits]]` end to end: on the real servers with two
gateway processes (the limit holds across both) and on `wdl dev`, through `wdl`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import WDL, Stack, platform_stack

APP = """
export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    if (u.pathname === "/meta") return Response.json(env.META);
    if (u.pathname === "/limit") {
      const key = u.searchParams.get("key");
      return Response.json(await env.RL.limit(key === null ? {} : { key }));
    }
    if (u.pathname === "/bad") {
      const tries = [undefined, null, "k", { key: 1 }, { key: "k", nope: 1, also: 2 },
                     { key: "k", limit: "3" }, { key: "k", period: "60" },
                     { key: "k", period: 30 }, { key: "k", limit: NaN }];
      const out = [];
      for (const t of tries) {
        try { out.push(await env.RL.limit(t)); }
        catch (e) { out.push(e.constructor.name + ": " + e.message); }
      }
      return Response.json(out);
    }
    return new Response("?", { status: 404 });
  },
};
"""

TOML = """
[version_metadata]
binding = "META"

[[ratelimits]]
name = "RL"
namespace_id = "1001"
simple = { limit = %d, period = 60 }
"""

BAD_ANSWERS = [
    "Error: invalid rate limit options", "Error: invalid rate limit options",
    "Error: invalid rate limit options", "Error: invalid key: 1",
    "Error: bad rate limit options: [nope,also]", "Error: limit must be a number: 3",
    "Error: period must be a number: 60", "Error: unsupported period: 30",
    "Error: limit must be a number: NaN",
]


def project(tmp: Path, name: str, limit: int) -> Path:
    directory = tmp / f"{name}-{limit}"
    (directory / "src").mkdir(parents=True, exist_ok=True)
    (directory / "wrangler.toml").write_text(
        f'name = "{name}"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n'
        + TOML % limit)
    (directory / "src" / "index.js").write_text(APP)
    return directory


async def fresh_window() -> None:
    """Start a count well inside one 60 s window (they are aligned on the epoch, on the
    clock of this machine's Redis), so no test straddles two."""
    into = time.time() % 60
    if into > 40:
        await asyncio.sleep(60 - into + 0.2)


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              gateway_processes=2) as stack:
        yield stack


async def test_version_metadata_tag_message_and_a_limit_across_two_gateways(
        stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("rl")
    await stack.wdl("ns", "create", ns)
    out = await stack.wdl("deploy", str(project(stack.tmp, "app", 5)), "--ns", ns, "--json",
                          "--tag", "v1.2", "--message", "first deploy: ratelimits")
    version = json.loads(out)["version_id"]
    host = {"host": f"{ns}.workers.local"}
    assert stack.platform.gateway is not None
    instances = [i.private_url for i in stack.platform.gateway.instances()]
    assert len(instances) == 2
    async with httpx.AsyncClient(timeout=20) as client:
        meta = (await client.get(stack.gateway + "/app/meta", headers=host)).json()
        listed = json.loads(await stack.wdl("versions", "app", "--ns", ns, "--json"))
        assert [(v["version_id"], v["tag"], v["message"]) for v in listed] == [
            (version, "v1.2", "first deploy: ratelimits")]
        uploaded = datetime.fromtimestamp(listed[0]["uploaded_at"] / 1000, UTC)
        assert meta == {"id": version, "tag": "v1.2",
                        "timestamp": uploaded.isoformat(timespec="milliseconds")
                        .replace("+00:00", "Z")}
        table = await stack.wdl("versions", "app", "--ns", ns)
        assert "v1.2" in table and "first deploy" in table

        bad = (await client.get(stack.gateway + "/app/bad", headers=host)).json()
        assert bad == BAD_ANSWERS

        # The limit holds across both gateway processes: 5 in the window, alternating.
        await fresh_window()
        answers = []
        for i in range(8):
            r = await client.get(instances[i % 2] + "/app/limit?key=alice", headers=host)
            assert r.status_code == 200, r.text
            answers.append(r.json()["success"])
        assert answers == [True] * 5 + [False] * 3
        # Other keys, and the default key "", count apart.
        r = await client.get(instances[1] + "/app/limit?key=bob", headers=host)
        assert r.json() == {"success": True}
        r = await client.get(instances[0] + "/app/limit", headers=host)
        assert r.json() == {"success": True}

    # No tag: the metadata says "" (Cloudflare's), the listing too.
    out = await stack.wdl("deploy", str(project(stack.tmp, "app", 5)), "--ns", ns, "--json")
    second = json.loads(out)["version_id"]
    async with httpx.AsyncClient(timeout=20) as client:
        meta = (await client.get(stack.gateway + "/app/meta", headers=host)).json()
    assert (meta["id"], meta["tag"]) == (second, "")

    # A tag past Cloudflare's 25 characters, or a line break, is refused, nothing written.
    for args, why in ((["--tag", "t" * 26], "longer than 25"),
                      (["--message", "two\nlines"], "printable")):
        proc = await asyncio.create_subprocess_exec(
            WDL, "deploy", str(project(stack.tmp, "app", 5)), "--ns", ns, *args,
            env=stack.env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode != 0 and why in err.decode(), err.decode()
    listed = json.loads(await stack.wdl("versions", "app", "--ns", ns, "--json"))
    assert [v["version_id"] for v in listed] == [version, second]


async def test_the_api_refuses_bad_tags_and_ratelimit_bindings(stack: Stack,
                                                               unique_name: Callable[[str], str],
                                                               ) -> None:
    import base64

    ns = unique_name("rlapi")
    await stack.wdl("ns", "create", ns)
    module = base64.b64encode(b"export default { fetch() { return new Response('x'); } };")
    base = {"main_module": "index.js", "compatibility_date": "2025-06-01",
            "modules": [{"name": "index.js", "content_b64": module.decode()}]}
    headers = {"authorization": f"Bearer {stack.env['WDL_TOKEN']}"}
    url = f"{stack.api}/v1/namespaces/{ns}/workers/w/versions"
    async with httpx.AsyncClient(timeout=20) as client:
        for extra in ({"tag": "bell\x07"}, {"message": "m" * 101},
                      {"bindings": [{"name": "RL", "kind": "ratelimit", "target": "10:01",
                                     "value": "3/60"}]},
                      {"bindings": [{"name": "RL", "kind": "ratelimit", "target": "1001",
                                     "value": "3/30"}]},
                      {"bindings": [{"name": "M", "kind": "version_metadata",
                                     "target": "x"}]}):
            r = await client.post(url, json={**base, **extra}, headers=headers)
            assert r.status_code in (400, 422), (extra, r.text)
        r = await client.get(f"{stack.api}/v1/namespaces/{ns}/workers/w/versions",
                             headers=headers)
        assert r.status_code == 404, r.text


CONFORMANCE = ROOT / "tests" / "workers" / "ratelimit_conformance.js"


async def test_the_binding_answers_as_miniflare_does(stack: Stack,
                                                     unique_name: Callable[[str], str]) -> None:
    """tests/workers/ratelimit_conformance.js under Miniflare's `ratelimits` and on WDL (both
    with limit 3, period 60), each started well inside a window: equal transcripts."""
    await fresh_window()
    proc = await asyncio.create_subprocess_exec(
        "node", str(ROOT / "tests/miniflare/ratelimit_reference.mjs"), cwd=ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, err.decode()
    reference = json.loads(out)
    ns = unique_name("rlconf")
    await stack.wdl("ns", "create", ns)
    directory = stack.tmp / "conformance"
    (directory / "src").mkdir(parents=True)
    (directory / "wrangler.toml").write_text(
        'name = "conf"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n'
        '[[ratelimits]]\nname = "RL"\nnamespace_id = "7"\nsimple = { limit = 3, period = 60 }\n')
    (directory / "src" / "index.js").write_text(CONFORMANCE.read_text())
    await stack.deploy(ns, directory)
    await fresh_window()
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(stack.gateway + "/conf/", headers={"host": f"{ns}.workers.local"})
    assert r.status_code == 200, r.text
    assert r.json() == reference


def test_wdl_dev_serves_version_metadata_and_rate_limits(dev: Dev, tmp_path: Path) -> None:
    dev.start()
    dev.cli("ns", "create", "demo")
    out = dev.cli("deploy", str(project(tmp_path, "app", 2)), "--ns", "demo", "--json",
                  "--tag", "dev-1")
    version = json.loads(out)["version_id"]
    meta = dev.get("demo.workers.local", "/app/meta").json()
    assert (meta["id"], meta["tag"]) == (version, "dev-1")
    assert meta["timestamp"].endswith("Z")
    asyncio.run(fresh_window())
    answers = [dev.get("demo.workers.local", "/app/limit?key=k").json()["success"]
               for _ in range(3)]
    assert answers == [True, True, False]
    assert dev.get("demo.workers.local", "/app/bad").json() == BAD_ANSWERS
    assert dev.interrupt() == 0
