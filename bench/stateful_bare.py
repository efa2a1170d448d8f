"""The baseline of `bench stateful`: bare workerd with a native SQLite-backed Durable Object.

One static worker and one DO class (`enableSql`, `localDisk` storage) doing what the
platform's D1 point read / point write and DO RPC round trip do, so the bench can
report the platform's latency as a ratio of what workerd itself pays for the same
call. It is kept out of `bench/stateful.py` because the DO namespace and disk
service are written as raw Cap'n Proto: the runtime's config model has no use for
them outside the bench.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType

from services.dataplane.workerd_config import capnp_text
from services.dataplane.workerd_process import WorkerdProcess, listening_socket

# The same SQL the platform's bench worker sends through D1, run in the object itself.
BARE_WORKER = """
import { DurableObject } from "cloudflare:workers";
export class Store extends DurableObject {
  constructor(ctx, env) {
    super(ctx, env);
    ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS kv (k INTEGER PRIMARY KEY, v TEXT)");
  }
  ping(x) { return x; }
  read(k) {
    const row = this.ctx.storage.sql.exec("SELECT v FROM kv WHERE k = ?", k).toArray()[0];
    return row ? row.v : null;
  }
  write(k, v) {
    this.ctx.storage.sql.exec(
      "INSERT INTO kv (k, v) VALUES (?, ?) ON CONFLICT(k) DO UPDATE SET v = excluded.v", k, v);
    return 1;
  }
}
const ops = {
  "/rpc": (stub, k) => stub.ping(k),
  "/read": (stub, k) => stub.read(k),
  "/write": (stub, k) => stub.write(k, "v" + k),
};
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const k = Number(url.searchParams.get("k") || "0");
    const n = Number(url.searchParams.get("n") || "1");
    const op = ops[url.pathname];
    if (!op) return new Response("not found", { status: 404 });
    const stub = env.OBJ.getByName("bench");
    const t0 = Date.now();
    let v;
    for (let i = 0; i < n; i++) v = await op(stub, k + i);
    return new Response(String(v), { headers: { "x-elapsed-ms": String(Date.now() - t0) } });
  },
};
"""


def bare_config(work: Path) -> Path:
    (work / "worker.js").write_text(BARE_WORKER)
    storage = work / "do-storage"
    storage.mkdir(exist_ok=True)
    text = f"""using Workerd = import "/workerd/workerd.capnp";
const config :Workerd.Config = (
  services = [
    (name = "main", worker = (
      modules = [(name = "worker.js", esModule = embed "worker.js")],
      compatibilityDate = "2025-11-17",
      durableObjectNamespaces = [
        (className = "Store", uniqueKey = "bench-store", enableSql = true)],
      durableObjectStorage = (localDisk = "disk"),
      bindings = [(name = "OBJ", durableObjectNamespace = "Store")])),
    (name = "disk", disk = (path = {capnp_text(str(storage))}, writable = true)),
  ],
  sockets = [(name = "http", http = (), service = "main")]
);
"""
    path = work / "bare.capnp"
    path.write_text(text)
    return path


class BareStateful:
    """Bare workerd serving BARE_WORKER on a loopback socket; `url` once entered."""

    def __init__(self, work: Path, workerd: str | None) -> None:
        self.work = work
        self.workerd = workerd
        self.url = ""
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> BareStateful:
        path = bare_config(self.work)
        sock = self._stack.enter_context(listening_socket("127.0.0.1", 0))
        await self._stack.enter_async_context(
            WorkerdProcess(path, socket_fds={"http": sock},
                           binary=Path(self.workerd) if self.workerd else None))
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self._stack.aclose()
