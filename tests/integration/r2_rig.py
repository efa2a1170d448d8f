"""Shared pieces of the R2 tests: store backends, a data app, a workerd rig.

The rig mimics what the platform will do: the gateway's `WdlR2` entrypoint,
a tenant worker loaded through a workerLoader whose env holds
`ctx.exports.WdlR2({props})` stubs, and the tenant wrapper applied by a
first-imported module (like the platform shim). The data routes run in a
small Starlette app on loopback with the internal-token check.
"""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
from botocore.config import Config
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.types import ASGIApp, Receive, Scope, Send

from harness.endpoints import Endpoints
from harness.workerd import (
    Config as WorkerdConfig,
)
from harness.workerd import (
    EsModule,
    External,
    ServiceBinding,
    ServiceRef,
    Socket,
    TextBinding,
    Worker,
    WorkerdProcess,
    WorkerLoaderBinding,
    listening_socket,
    write_config,
)
from services.r2 import R2Store, open_r2_store
from services.r2.routes import r2_routes
from services.serving import HttpServer

ROOT = Path(__file__).resolve().parents[2]
GATEWAY_R2 = ROOT / "workerd" / "gateway" / "r2.js"
TENANT_R2 = ROOT / "workerd" / "tenant" / "r2.js"
TOKEN = "rig-internal-token"


def s3_env(services: Endpoints) -> dict[str, str]:
    assert services.s3_endpoint_url and services.s3_access_key_id
    assert services.s3_secret_access_key
    return {
        "S3_ENDPOINT_URL": services.s3_endpoint_url,
        "S3_ACCESS_KEY_ID": services.s3_access_key_id,
        "S3_SECRET_ACCESS_KEY": services.s3_secret_access_key,
        "S3_REGION": "us-east-1",
    }


def raw_s3(services: Endpoints) -> object:
    return boto3.client(
        "s3", endpoint_url=services.s3_endpoint_url,
        aws_access_key_id=services.s3_access_key_id,
        aws_secret_access_key=services.s3_secret_access_key, region_name="us-east-1",
        config=Config(signature_version="s3v4", s3={"addressing_style": "path"}))


def empty_s3_bucket(services: Endpoints, bucket: str) -> None:
    raw = raw_s3(services)
    try:
        while True:
            listed = raw.list_objects_v2(Bucket=bucket)  # type: ignore[attr-defined]
            keys = [{"Key": o["Key"]} for o in listed.get("Contents", [])]
            if not keys:
                break
            raw.delete_objects(Bucket=bucket, Delete={"Objects": keys})  # type: ignore[attr-defined]
        uploads = raw.list_multipart_uploads(Bucket=bucket)  # type: ignore[attr-defined]
        for up in uploads.get("Uploads", []):
            raw.abort_multipart_upload(  # type: ignore[attr-defined]
                Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"])
        raw.delete_bucket(Bucket=bucket)  # type: ignore[attr-defined]
    except raw.exceptions.NoSuchBucket:  # type: ignore[attr-defined]
        pass


@asynccontextmanager
async def opened_store(kind: str, tmp: Path, services: Callable[[], Endpoints],
                       name: str) -> AsyncIterator[R2Store]:
    """A started store on a fresh directory or a fresh S3 bucket (removed afterwards)."""
    if kind == "local":
        async with open_r2_store((tmp / "r2").as_uri()) as store:
            yield store
        return
    svc = services()
    try:
        async with open_r2_store(f"s3://{name}", environ=s3_env(svc)) as store:
            yield store
    finally:
        empty_s3_bucket(svc, name)


class _TokenGuard:
    """The internal-token check the lead's data app does, so the rig speaks the same."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            headers = dict(scope["headers"])
            if headers.get(b"x-wdl-internal-token") != TOKEN.encode():
                await JSONResponse({"error": {"code": "unauthorized"}}, 401)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def data_app(store: R2Store, buckets: set[tuple[str, str]]) -> ASGIApp:
    async def exists(ns: str, bucket: str) -> bool:
        return (ns, bucket) in buckets

    async def rss(request: Request) -> Response:
        if request.query_params.get("reset"):
            reset_peak_rss()
        return JSONResponse({"rss_kib": rss_kib(), "peak_kib": rss_kib("VmHWM")})

    from starlette.routing import Route

    app = Starlette(routes=[Mount("/r2", routes=r2_routes(store, exists)),
                            Route("/__rss", rss)])
    return _TokenGuard(app)


def rss_kib(field: str = "VmRSS") -> int:
    """This process's resident set (VmRSS) or its peak since the last reset (VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak_rss() -> None:
    # Writing 5 to clear_refs resets VmHWM to the current RSS (Linux >= 4.0), so the peak
    # measured afterwards belongs to the operation under test, not to earlier tests.
    Path("/proc/self/clear_refs").write_text("5")


# --- workerd -----------------------------------------------------------------

MAIN = """
import { WorkerEntrypoint } from "cloudflare:workers";
export { WdlR2 } from "./r2.js";

const BINDINGS = JSON.parse(%(bindings)s);

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const tenant = url.searchParams.get("tenant");
    // WorkerdProcess probes "/" until it answers: that must not run a tenant.
    if (tenant === null) return new Response("ready");
    const spec = BINDINGS[tenant];
    const worker = env.LOADER.get("tenant:" + tenant, () => {
      const tenantEnv = {};
      for (const [name, props] of Object.entries(spec)) {
        tenantEnv[name] = ctx.exports.WdlR2({ props });
      }
      return {
        compatibilityDate: "2025-11-17",
        compatibilityFlags: ["nodejs_compat"],
        mainModule: "__wdl/boot.js",
        modules: {
          "__wdl/boot.js": 'import "./wrap.js"; export { default } from "../worker.js";',
          "__wdl/wrap.js": env.WRAP,
          "__wdl/r2.js": env.TENANT_R2,
          "worker.js": env.TENANT_WORKER,
        },
        env: tenantEnv,
        globalOutbound: null,
      };
    });
    return worker.getEntrypoint().fetch(request);
  },
};
"""

WRAP = """
import { env } from "cloudflare:workers";
import { wrap as wrapR2 } from "./r2.js";
for (const name of JSON.parse(%(names)s)) env[name] = wrapR2(env[name], name);
"""


@dataclass
class Rig:
    url: str
    data_url: str
    process: WorkerdProcess


@asynccontextmanager
async def workerd_rig(store: R2Store, tenant_worker: str,
                      bindings: dict[str, dict[str, dict[str, str]]],
                      tmp: Path, workerd_bin: str) -> AsyncIterator[Rig]:
    """workerd + data app; `bindings[tenant][BINDING] = props`. Requests pick a tenant
    with `?tenant=`."""
    buckets = {(p["namespace"], p["resource"]) for t in bindings.values() for p in t.values()}
    server = HttpServer(data_app(store, buckets), name="r2-data")
    await server.start()
    host, port = server.address
    names = sorted({n for t in bindings.values() for n in t})
    config = WorkerdConfig(
        services=[
            Worker(
                name="gateway",
                modules=[
                    EsModule("main.js", MAIN % {"bindings": json.dumps(json.dumps(bindings))}),
                    EsModule("r2.js", GATEWAY_R2.read_text()),
                ],
                compatibility_date="2025-11-17",
                compatibility_flags=["nodejs_compat"],
                bindings=[
                    WorkerLoaderBinding("LOADER"),
                    ServiceBinding("DATA", ServiceRef("data")),
                    TextBinding("INTERNAL_TOKEN", TOKEN),
                    TextBinding("WRAP", WRAP % {"names": json.dumps(json.dumps(names))}),
                    TextBinding("TENANT_R2", TENANT_R2.read_text()),
                    TextBinding("TENANT_WORKER", tenant_worker),
                ],
            ),
            External("data", f"{host}:{port}"),
        ],
        sockets=[Socket("http", ServiceRef("gateway"))],
    )
    path = write_config(config, tmp / "r2rig.capnp")
    sock: socket.socket = listening_socket("127.0.0.1", 0)
    process = WorkerdProcess(path, experimental=True, binary=Path(workerd_bin),
                             socket_fds={"http": sock})
    try:
        await process.start()
        whost, wport = sock.getsockname()[:2]
        yield Rig(f"http://{whost}:{wport}", server.url, process)
    finally:
        await process.stop()
        sock.close()
        await server.stop()
