"""A small real stack for the KV binding: data routes + workerd + entrypoint + wrapper.

- the KV data routes (services/kv/routes.py) behind the data service's token
  guard (services/data/app.py), served on a loopback port;
- real workerd whose main worker exports `WdlKv` (workerd/gateway/kv.js) and,
  per (namespace, resource), loads a tenant worker through a workerLoader with
  `env.KV = ctx.exports.WdlKv({props})`, wrapped by workerd/tenant/kv.js in a
  first-imported module exactly as the platform shim does.

`GET {url}/t/{ns}/{res}/...` reaches the tenant worker with that binding.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from harness.workerd import (
    Config,
    EsModule,
    External,
    ServiceBinding,
    ServiceRef,
    Socket,
    TextBinding,
    TextModule,
    Worker,
    WorkerdProcess,
    WorkerLoaderBinding,
    listening_socket,
    write_config,
)
from services.data.app import create_data_app
from services.kv.port import KvStore
from services.kv.routes import kv_routes
from services.serving import HttpServer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "kv-rig-internal-token"
COMPAT_DATE = "2025-11-17"

MAIN = """
export { WdlKv } from "./kv.js";
import kvSource from "./tenant/kv.js";
import workerSource from "./tenant/worker.js";

const SHIM = `import { env } from "cloudflare:workers";
import { wrap as wrapKv } from "./kv.js";
env.KV = wrapKv(env.KV, "KV");
`;
const ENTRY = `import "./shim.js";
export { default } from "../worker.js";
`;

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    const m = url.pathname.match(/^\\/t\\/([^/]+)\\/([^/]+)(\\/.*)?$/);
    if (m === null) return new Response("ok");
    const [, ns, res, rest] = m;
    const worker = env.LOADER.get(`${ns}/${res}`, () => ({
      compatibilityDate: env.COMPAT_DATE,
      mainModule: "__wdl/main.js",
      modules: {
        "__wdl/main.js": ENTRY,
        "__wdl/shim.js": SHIM,
        "__wdl/kv.js": kvSource,
        "worker.js": workerSource,
      },
      env: {
        KV: ctx.exports.WdlKv({
          props: { namespace: ns, resource: res, worker: "w", version: "v1" },
        }),
      },
      globalOutbound: null,
    }));
    const inner = new URL(rest || "/", url);
    inner.search = url.search;
    return worker.getEntrypoint().fetch(new Request(inner, request));
  },
};
"""


@dataclass
class KvRig:
    url: str
    data_url: str
    store: KvStore
    resources: set[tuple[str, str]] = field(default_factory=set)

    def tenant(self, ns: str, res: str) -> str:
        return f"{self.url}/t/{ns}/{res}"


def _modules(tenant_worker: Path) -> list[EsModule | TextModule]:
    return [
        EsModule("main.js", MAIN),
        EsModule("kv.js", (ROOT / "workerd/gateway/kv.js").read_text()),
        TextModule("tenant/kv.js", (ROOT / "workerd/tenant/kv.js").read_text()),
        TextModule("tenant/worker.js", tenant_worker.read_text()),
    ]


@contextlib.asynccontextmanager
async def kv_rig(store: KvStore, workerd_bin: Path, work_dir: Path, *,
                 tenant_worker: Path = ROOT / "tests" / "workers" / "kv_conformance.js",
                 ) -> AsyncIterator[KvRig]:
    """`store` must be started; resources exist once added to `rig.resources`."""
    resources: set[tuple[str, str]] = set()

    async def exists(ns: str, res: str) -> bool:
        return (ns, res) in resources

    app = create_data_app({"kv": kv_routes(store, exists)}, internal_token=TOKEN)
    async with HttpServer(app, name="kv-data") as data:
        host, port = data.address
        config = Config(
            services=[
                Worker(
                    name="main",
                    modules=_modules(tenant_worker),
                    compatibility_date=COMPAT_DATE,
                    bindings=[
                        WorkerLoaderBinding("LOADER"),
                        ServiceBinding("DATA", ServiceRef("data")),
                        TextBinding("INTERNAL_TOKEN", TOKEN),
                        TextBinding("COMPAT_DATE", COMPAT_DATE),
                    ],
                ),
                External("data", f"{host}:{port}"),
            ],
            sockets=[Socket("http", ServiceRef("main"))],
        )
        path = write_config(config, work_dir / "kv-rig.capnp")
        sock: socket.socket = listening_socket("127.0.0.1", 0)
        try:
            whost, wport = sock.getsockname()[:2]
            async with WorkerdProcess(path, experimental=True, binary=workerd_bin,
                                      socket_fds={"http": sock}):
                yield KvRig(f"http://{whost}:{wport}", data.url, store, resources)
        finally:
            sock.close()
