"""R2 on the whole platform: `wdl deploy` with `[[r2_buckets]]`, the gateway's WdlR2 binding
and tenant shim, the data service, and `wdl r2 object` on the same bucket, on the real
servers (S3 = versitygw) and real workerd. Two namespaces with a bucket of the same name
never see each other's objects.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.platform_stack import WDL, Stack, platform_stack

pytestmark = pytest.mark.integration

WORKER = """
export default { async fetch(req, env) {
  const url = new URL(req.url);
  const key = url.searchParams.get("key");
  if (url.pathname.endsWith("/put")) {
    const o = await env.FILES.put(key, req.body, {
      httpMetadata: { contentType: req.headers.get("content-type") || undefined },
      customMetadata: { via: "worker" } });
    return Response.json({ etag: o.etag, size: o.size });
  }
  if (url.pathname.endsWith("/get")) {
    const o = await env.FILES.get(key);
    if (o === null) return new Response("missing", { status: 404 });
    const headers = new Headers();
    o.writeHttpMetadata(headers);
    headers.set("etag", o.httpEtag);
    return new Response(o.body, { headers });
  }
  if (url.pathname.endsWith("/list")) {
    const r = await env.FILES.list();
    return Response.json(r.objects.map((o) => o.key));
  }
  return new Response(String(env.FILES), { status: 400 });
} };
"""

R2_BINDING = """
[[r2_buckets]]
binding = "FILES"
bucket_name = "files"
"""


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        yield stack


async def call(stack: Stack, ns: str, method: str, path: str,
               content: bytes | None = None, headers: dict[str, str] | None = None,
               ) -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.request(method, stack.gateway + path, content=content,
                                    headers={"host": f"{ns}.workers.local", **(headers or {})})


async def wdl_bytes(stack: Stack, *args: str, stdin: bytes | None = None) -> bytes:
    proc = await asyncio.create_subprocess_exec(
        WDL, *args, env=stack.env, stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate(stdin)
    assert proc.returncode == 0, f"wdl {' '.join(args)}: {err.decode()}"
    return out


async def test_worker_and_cli_share_the_bucket_per_namespace(stack: Stack) -> None:
    for ns in ("acme", "other"):
        await stack.wdl("ns", "create", ns)
        project = stack.project("app", WORKER)
        toml = project / "wrangler.toml"
        toml.write_text(toml.read_text() + R2_BINDING)
        await stack.deploy(ns, project)  # provisions the bucket

    data = os.urandom(2 * 1024 * 1024 + 5)
    put = await call(stack, "acme", "PUT", "/app/put?key=docs/a.bin", data,
                     {"content-type": "application/x-a"})
    assert put.status_code == 200, put.text
    assert put.json() == {"etag": hashlib.md5(data).hexdigest(), "size": len(data)}

    # The CLI reads what the worker wrote, with its metadata, through the control API.
    assert await wdl_bytes(stack, "r2", "object", "get", "files/docs/a.bin", "--ns", "acme",
                           "--pipe") == data
    head = json.loads(await wdl_bytes(stack, "r2", "object", "head", "files/docs/a.bin",
                                      "--ns", "acme", "--json"))
    assert head["httpMetadata"] == {"contentType": "application/x-a"}
    assert head["customMetadata"] == {"via": "worker"}

    # And the worker reads what the CLI wrote.
    await wdl_bytes(stack, "r2", "object", "put", "files/from-cli.txt", "--ns", "acme",
                    "--pipe", "--content-type", "text/plain", stdin=b"hello from cli")
    got = await call(stack, "acme", "GET", "/app/get?key=from-cli.txt")
    assert got.status_code == 200 and got.text == "hello from cli"
    assert got.headers["content-type"] == "text/plain"

    # Same bucket name in another namespace: a different bucket.
    assert (await call(stack, "acme", "GET", "/app/list")).json() == ["docs/a.bin",
                                                                       "from-cli.txt"]
    assert (await call(stack, "other", "GET", "/app/list")).json() == []
    missing = await call(stack, "other", "GET", "/app/get?key=docs/a.bin")
    assert missing.status_code == 404
    listed = json.loads(await wdl_bytes(stack, "r2", "object", "list", "files", "--ns",
                                        "other", "--json"))
    assert listed == {"objects": [], "delimitedPrefixes": []}
