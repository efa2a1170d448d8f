"""The binding model end to end on the real servers and real workerd, through `wdl`.

Service bindings (fetch and JSRPC, resolved at call time, cross-namespace only
with a grant), the egress policy (decided before any connection; loopback only
under the operator test setting), provisioning on deploy and deploy refusals
that write nothing.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.platform_stack import WDL, Stack, answer, platform_stack

BACKEND = """
import { WorkerEntrypoint } from "cloudflare:workers";
export class Api extends WorkerEntrypoint {
  async add(a, b) { return { sum: a + b, by: VERSION, caller: this.ctx.props ?? null }; }
  async whoami() { return "api " + VERSION; }
}
const VERSION = %s;
export default { async fetch(req) { return new Response("backend " + VERSION + " " +
  new URL(req.url).pathname); } };
"""

FRONT = """
export default { async fetch(req, env) {
  const out = {};
  out.fetched = await (await env.BACKEND.fetch("https://internal/ping")).text();
  out.rpc = await env.API.add(2, 3);
  out.who = await env.API.whoami();
  try { await env.API.nope(); } catch (e) { out.missing = String(e.message || e); }
  out.keys = Object.keys(env).sort();
  return Response.json(out);
} };
"""

FETCHER = """
export default { async fetch(req) {
  const target = new URL(req.url).searchParams.get("url");
  try {
    const r = await fetch(target);
    return new Response("reached " + r.status + " " + await r.text());
  } catch (e) { return new Response("refused: " + e.message); }
} };
"""


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        yield stack


async def get(stack: Stack, ns: str, path: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=15) as client:
        return await client.get(stack.gateway + path, headers={"host": f"{ns}.workers.local"})


def with_config(project: Path, extra: str) -> Path:
    toml = project / "wrangler.toml"
    toml.write_text(toml.read_text() + extra)
    return project


SERVICES = """
[[services]]
binding = "BACKEND"
service = "%(target)s"

[[services]]
binding = "API"
service = "%(target)s"
entrypoint = "Api"
"""


async def test_service_binding_fetch_and_rpc_follow_the_active_version(stack: Stack) -> None:
    await stack.wdl("ns", "create", "acme")
    await stack.deploy("acme", stack.project("backend", BACKEND % json.dumps("v1")))
    await stack.deploy("acme", with_config(stack.project("front", FRONT),
                                           SERVICES % {"target": "backend"}))
    r = await get(stack, "acme", "/front/")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fetched"] == "backend v1 /ping"
    assert body["rpc"]["sum"] == 5 and body["rpc"]["by"] == "v1"
    assert body["who"] == "api v1"
    assert "nope" in body["missing"]
    assert body["keys"] == ["API", "BACKEND"]  # no platform internals in env
    # A promote of the target is seen by the caller's next request, without redeploying it.
    await stack.deploy("acme", stack.project("backend", BACKEND % json.dumps("v2")))
    body = (await get(stack, "acme", "/front/")).json()
    assert body["fetched"] == "backend v2 /ping" and body["rpc"]["by"] == "v2"


async def test_cross_namespace_service_needs_a_grant(stack: Stack) -> None:
    await stack.wdl("ns", "create", "acme")
    await stack.wdl("ns", "create", "partner")
    await stack.deploy("acme", stack.project("backend", BACKEND % json.dumps("v1")))
    front = with_config(stack.project("front", FRONT), SERVICES % {"target": "acme/backend"})
    refused = await stack.wdl("deploy", str(front), "--ns", "partner", ok=False)
    assert "service_not_granted" in refused or await _no_worker(stack, "partner", "front")
    assert await _no_worker(stack, "partner", "front")
    await stack.wdl("ns", "grant", "partner", "--ns", "acme", "--worker", "backend")
    assert "partner" in await stack.wdl("ns", "grants", "--ns", "acme")
    await stack.deploy("partner", front)
    body = (await get(stack, "partner", "/front/")).json()
    assert body["fetched"] == "backend v1 /ping" and body["rpc"]["sum"] == 5
    # A revoke takes effect at call time, without a redeploy of the caller.
    await stack.wdl("ns", "revoke", "partner", "--ns", "acme", "--worker", "backend")
    r = await get(stack, "partner", "/front/")
    assert r.status_code == 500 and r.json()["error"] == "worker_exception"


async def _no_worker(stack: Stack, ns: str, worker: str) -> bool:
    rows = json.loads(await stack.wdl("workers", "--ns", ns, "--json"))
    return all(row["name"] != worker for row in rows)


async def test_egress_refusals_are_decided_before_connecting(stack: Stack) -> None:
    hits: list[bytes] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        hits.append(await reader.read(1024))
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await stack.wdl("ns", "create", "acme")
        await stack.deploy("acme", stack.project("probe", FETCHER))
        for target in [f"http://127.0.0.1:{port}/", f"http://localhost:{port}/",
                       f"http://[::1]:{port}/", "http://169.254.169.254/latest/meta-data/",
                       "http://10.0.0.1/", f"http://2130706433:{port}/"]:
            text = (await get(stack, "acme", f"/probe/?url={target}")).text
            assert text.startswith("refused: "), (target, text)
            assert "egress policy of namespace acme" in text
        await stack.wdl("ns", "egress", "set", "deny", "--ns", "acme")
        assert json.loads(await stack.wdl("ns", "egress", "show", "--ns", "acme",
                                          "--json"))["mode"] == "deny"
        text = (await get(stack, "acme", "/probe/?url=https://example.com/")).text
        assert text.startswith("refused: ") and "denies all outbound" in text
        await stack.wdl("ns", "egress", "set", "allow", "--allow", "api.example.com:443",
                        "--ns", "acme")
        text = (await get(stack, "acme", "/probe/?url=https://other.example.com/")).text
        assert "not in the allow list" in text
    assert hits == []  # nothing ever connected


async def test_loopback_only_under_the_operator_test_setting(loopback_stack: Stack) -> None:
    stack = loopback_stack

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.read(1024)
        if request.startswith(b"GET /jump"):
            writer.write(b"HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/\r\n"
                         b"content-length: 0\r\nconnection: close\r\n\r\n")
        else:
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nhi")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        await stack.wdl("ns", "create", "acme")
        await stack.deploy("acme", stack.project("probe", FETCHER))
        text = (await get(stack, "acme", f"/probe/?url=http://127.0.0.1:{port}/ok")).text
        assert text == "reached 200 hi"
        # Every redirect hop is decided again: this one points at the metadata address.
        text = (await get(stack, "acme", f"/probe/?url=http://127.0.0.1:{port}/jump")).text
        assert text.startswith("refused: ") and "metadata" in text
        text = (await get(stack, "acme", "/probe/?url=http://10.0.0.1/")).text
        assert text.startswith("refused: ")


KV_R2 = """
[[kv_namespaces]]
binding = "CACHE"
id = "cache"

[[r2_buckets]]
binding = "FILES"
bucket_name = "files"
"""


async def test_deploy_provisions_resources_and_refuses_what_it_cannot_serve(
        stack: Stack) -> None:
    await stack.wdl("ns", "create", "acme")
    # Unsupported wrangler key: refused before upload, naming the key.
    project = with_config(stack.project("unsup", answer("x")),
                          '\n[ai]\nbinding = "AI"\n')
    proc = await asyncio.create_subprocess_exec(
        WDL, "deploy", str(project), "--ns", "acme", env=stack.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    assert proc.returncode != 0 and b"`ai`" in err
    # Missing resources with --no-provision: refused, nothing written.
    project = with_config(stack.project("app", answer("app")), KV_R2)
    proc = await asyncio.create_subprocess_exec(
        WDL, "deploy", str(project), "--ns", "acme", "--no-provision", env=stack.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    assert proc.returncode != 0 and b"binding_target_missing" in err
    assert await _no_worker(stack, "acme", "app")
    assert json.loads(await stack.wdl("kv", "namespace", "list", "--ns", "acme",
                                      "--json")) == []
    # Provisioned on deploy.
    await stack.deploy("acme", project)
    kv = json.loads(await stack.wdl("kv", "namespace", "list", "--ns", "acme", "--json"))
    r2 = json.loads(await stack.wdl("r2", "bucket", "list", "--ns", "acme", "--json"))
    assert [k["name"] for k in kv] == ["cache"] and [b["name"] for b in r2] == ["files"]
    assert (await get(stack, "acme", "/app/")).text == "app /"
    # In use by the active version: refused unless forced.
    before = len(json.loads(await stack.wdl("audit", "--ns", "acme", "--json", "--all")))
    proc = await asyncio.create_subprocess_exec(
        WDL, "kv", "namespace", "delete", "cache", "--ns", "acme", env=stack.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _out, err = await proc.communicate()
    assert proc.returncode != 0 and b"resource_in_use" in err and b"app" in err
    assert json.loads(await stack.wdl("kv", "namespace", "list", "--ns", "acme", "--json"))
    after = len(json.loads(await stack.wdl("audit", "--ns", "acme", "--json", "--all")))
    assert after == before  # refused before anything was appended
    await stack.wdl("r2", "bucket", "delete", "files", "--ns", "acme", "--force")
    assert json.loads(await stack.wdl("r2", "bucket", "list", "--ns", "acme", "--json")) == []
    types = [row.get("type") for row in
             json.loads(await stack.wdl("audit", "--ns", "acme", "--json", "--all"))]
    assert "r2.bucket_deleted" in types and "kv.namespace_deleted" not in types


async def test_the_bindings_example_runs_on_the_real_servers(stack: Stack) -> None:
    examples = ROOT / "examples"
    await stack.wdl("ns", "create", "demo")
    await stack.deploy("demo", examples / "hello")
    await stack.deploy("demo", examples / "bindings")  # provisions the KV namespace + bucket
    assert (await get(stack, "demo", "/bindings/counter")).json()["counter"] == 1
    assert (await get(stack, "demo", "/bindings/counter")).json()["counter"] == 2
    async with httpx.AsyncClient(timeout=15) as client:
        put = await client.put(stack.gateway + "/bindings/files/a/b.txt", content=b"on s3",
                               headers={"host": "demo.workers.local"})
    assert put.status_code == 200 and put.json()["size"] == 5
    assert (await get(stack, "demo", "/bindings/files/a/b.txt")).text == "on s3"
    assert (await get(stack, "demo", "/bindings/files")).json() == [{"key": "a/b.txt",
                                                                     "size": 5}]
    hello = await get(stack, "demo", "/bindings/hello")
    assert hello.text == "Hello from WDL! You asked for /from-bindings\n"
    # The CLI sees what the worker wrote (the same data, read-your-writes).
    assert (await stack.wdl("kv", "key", "get", "counter", "-k", "example-cache",
                            "--ns", "demo")).strip() == "2"
