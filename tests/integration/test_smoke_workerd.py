"""Real workerd serving a Worker that was loaded at request time through a `workerLoader`.

The main (static) Worker has a `LOADER` binding. On `/dyn/...` it does
`env.LOADER.get(id, () => code)` and forwards the request to the loaded Worker's default
entrypoint. The loaded Worker gets `env` from the loader call and `globalOutbound: null`, so it
must not be able to `fetch()` anything, even though the main Worker itself can reach the
loopback HTTP sink this test runs (the positive control).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from harness.endpoints import Endpoints
from harness.workerd import (
    Config,
    EsModule,
    JsonBinding,
    Network,
    ServiceRef,
    Socket,
    TextBinding,
    Worker,
    WorkerdProcess,
    WorkerdStartError,
    WorkerLoaderBinding,
    listening_socket,
    write_config,
)

pytestmark = pytest.mark.integration

GREETING = 'héllo "wdl" ✓'  # non-ASCII and quotes: exercises the capnp text escaping

# The tenant bundle, as the gateway will receive it: module name -> source.
TENANT_V1 = """
let served = 0;
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/outbound") {
      try {
        const r = await fetch(env.SINK_URL + "/from-dynamic");
        return Response.json({ blocked: false, status: r.status });
      } catch (e) {
        return Response.json({ blocked: true, error: String(e && e.message) });
      }
    }
    served += 1;
    return Response.json({
      version: "v1",
      greeting: env.GREETING,
      echo: url.searchParams.get("echo"),
      nonce: crypto.randomUUID(),
      served,
    });
  },
};
"""

TENANT_V2 = """
export default {
  fetch(request, env) {
    return Response.json({ version: "v2", greeting: env.GREETING });
  },
};
"""

MAIN = """
let loads = 0;  // how many times the loader asked us for code

function codeFor(bundle, env) {
  return () => {
    loads += 1;
    return {
      compatibilityDate: "2025-06-01",
      mainModule: "index.js",
      modules: bundle,
      env: { GREETING: env.GREETING, SINK_URL: env.SINK_URL },
      globalOutbound: null,
    };
  };
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/stats") {
      return Response.json({ loads });
    }
    if (url.pathname === "/control") {
      // The main Worker's own globalOutbound reaches loopback: the positive control.
      const r = await fetch(env.SINK_URL + "/control");
      return new Response(await r.text(), { status: r.status });
    }
    const m = url.pathname.match(/^\\/dyn\\/([^/]+)(\\/.*)?$/);
    if (m === null) {
      return new Response("ok");
    }
    const [, id, rest] = m;
    const bundle = url.searchParams.get("bundle") === "v2" ? env.TENANT_V2 : env.TENANT_V1;
    const worker = env.LOADER.get(id, codeFor(bundle, env));
    const inner = new URL(rest || "/", url);
    inner.search = url.search;
    return worker.getEntrypoint().fetch(new Request(inner, request));
  },
};
"""


@dataclass
class Sink:
    """A loopback HTTP server that records the path of every request it receives."""

    server: asyncio.Server
    paths: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.server.sockets[0].getsockname()[:2]
        return f"http://{host}:{port}"


async def _start_sink() -> Sink:
    sink: Sink

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                pass
            parts = request_line.decode("latin-1").split()
            sink.paths.append(parts[1] if len(parts) > 1 else "?")
            body = b"sink-ok"
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s"
                % (len(body), body)
            )
            await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    sink = Sink(server)
    return sink


@pytest.fixture(scope="module")
def workerd_binary(services: Endpoints) -> Path:
    assert services.workerd_bin is not None
    return Path(services.workerd_bin)


@pytest.fixture(scope="module")
def http_socket() -> Iterator[socket.socket]:
    sock = listening_socket("127.0.0.1", 0)
    try:
        yield sock
    finally:
        sock.close()


@dataclass
class Running:
    base_url: str
    sink: Sink
    process: WorkerdProcess


@pytest.fixture(scope="module")
async def running(
    workerd_binary: Path, http_socket: socket.socket, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Running]:
    sink = await _start_sink()
    config = Config(
        services=[
            Worker(
                name="main",
                modules=[EsModule("main.js", MAIN)],
                compatibility_date="2025-06-01",
                bindings=[
                    WorkerLoaderBinding("LOADER"),
                    TextBinding("GREETING", GREETING),
                    TextBinding("SINK_URL", sink.url),
                    JsonBinding("TENANT_V1", {"index.js": TENANT_V1}),
                    JsonBinding("TENANT_V2", {"index.js": TENANT_V2}),
                ],
                global_outbound=ServiceRef("loopback"),
            ),
            Network("loopback", allow=["local"]),
        ],
        sockets=[Socket("http", ServiceRef("main"))],
    )
    path = write_config(config, tmp_path_factory.mktemp("workerd") / "smoke.capnp")
    process = WorkerdProcess(
        path, experimental=True, binary=workerd_binary, socket_fds={"http": http_socket}
    )
    await process.start()
    host, port = http_socket.getsockname()[:2]
    try:
        yield Running(f"http://{host}:{port}", sink, process)
    finally:
        await process.stop()
        sink.server.close()
        await sink.server.wait_closed()


async def _get(client: httpx.AsyncClient, url: str) -> httpx.Response:
    response = await client.get(url)
    assert response.status_code == 200, response.text
    return response


async def test_loaded_worker_serves_env_and_per_request_values(running: Running) -> None:
    id_ = f"smoke:v1:{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        loads_before = (await _get(client, "/stats")).json()["loads"]
        echo1, echo2 = uuid.uuid4().hex, uuid.uuid4().hex
        first = (await _get(client, f"/dyn/{id_}/hello?echo={echo1}")).json()
        second = (await _get(client, f"/dyn/{id_}/hello?echo={echo2}")).json()
        loads_after = (await _get(client, "/stats")).json()["loads"]

    assert first["version"] == second["version"] == "v1"
    assert first["greeting"] == second["greeting"] == GREETING
    assert (first["echo"], second["echo"]) == (echo1, echo2)
    assert first["nonce"] != second["nonce"]
    # Same id -> same isolate: the code callback ran once and module state carried over.
    assert loads_after - loads_before == 1
    assert second["served"] == first["served"] + 1


async def test_loader_caches_by_id_so_ids_must_be_immutable(running: Running) -> None:
    id_ = f"smoke:{uuid.uuid4().hex[:8]}"
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        v1 = (await _get(client, f"/dyn/{id_}/")).json()
        # Same id with different code: the cached isolate answers, the new code is ignored.
        again = (await _get(client, f"/dyn/{id_}/?bundle=v2")).json()
        # A new id (what a promote does) loads the new code.
        v2 = (await _get(client, f"/dyn/{id_}:next/?bundle=v2")).json()

    assert v1["version"] == "v1"
    assert again["version"] == "v1"
    assert v2 == {"version": "v2", "greeting": GREETING}


async def test_null_global_outbound_blocks_fetch(running: Running) -> None:
    sink = running.sink
    seen = len(sink.paths)
    async with httpx.AsyncClient(base_url=running.base_url) as client:
        control = await _get(client, "/control")
        assert control.text == "sink-ok"
        assert sink.paths[seen:] == ["/control"]

        blocked = (await _get(client, f"/dyn/smoke:v1:{uuid.uuid4().hex[:8]}/outbound")).json()

        # A second control request after the attempt: had the dynamic fetch gone out, the
        # sink would have recorded it before this one.
        again = await _get(client, "/control")
        assert again.text == "sink-ok"

    assert blocked["blocked"] is True, blocked
    assert "not permitted to access the internet" in blocked["error"], blocked
    assert sink.paths[seen:] == ["/control", "/control"]


def _hello_config() -> Config:
    return Config(
        services=[
            Worker(
                name="hello",
                modules=[EsModule("hello.js", HELLO)],
                compatibility_date="2025-06-01",
                bindings=[WorkerLoaderBinding("LOADER", id="shared")],
            )
        ],
        sockets=[Socket("http", ServiceRef("hello"))],
    )


HELLO = """
export default {
  fetch(request, env) {
    return new Response(typeof env.LOADER.get);
  },
};
"""


async def test_process_lifecycle(workerd_binary: Path, tmp_path: Path) -> None:
    path = write_config(_hello_config(), tmp_path / "hello.capnp")
    with listening_socket() as sock:
        host, port = sock.getsockname()[:2]
        async with WorkerdProcess(
            path, binary=workerd_binary, socket_fds={"http": sock}
        ) as process:
            assert process.running
            async with httpx.AsyncClient() as client:
                r = await client.get(f"http://{host}:{port}/")
            assert r.text == "function"
        assert not process.running
    assert await process.stop() is not None  # idempotent


async def test_loader_binding_needs_experimental(workerd_binary: Path, tmp_path: Path) -> None:
    path = write_config(_hello_config(), tmp_path / "hello.capnp")
    with listening_socket() as sock:
        process = WorkerdProcess(
            path, experimental=False, binary=workerd_binary, socket_fds={"http": sock}
        )
        with pytest.raises(WorkerdStartError, match="--experimental"):
            await process.start()
    assert not process.running


ROOT = Path(__file__).resolve().parents[2]
SUPERVISOR = """
import asyncio, sys
from pathlib import Path
from harness.workerd import WorkerdProcess, listening_socket

async def main() -> None:
    with listening_socket() as sock:
        process = WorkerdProcess(Path(sys.argv[1]), binary=sys.argv[2],
                                 socket_fds={"http": sock})
        await process.start()
        print(process.pid, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


async def test_a_killed_supervisor_takes_its_workerd_with_it(
        workerd_binary: Path, tmp_path: Path) -> None:
    """SIGKILL runs no cleanup: workerd must still not outlive the process that started it."""
    path = write_config(_hello_config(), tmp_path / "hello.capnp")
    supervisor = await asyncio.create_subprocess_exec(
        sys.executable, "-c", SUPERVISOR, str(path), str(workerd_binary),
        stdout=asyncio.subprocess.PIPE, cwd=ROOT)
    assert supervisor.stdout is not None
    line = await asyncio.wait_for(supervisor.stdout.readline(), 60)
    child = int(line)
    assert _alive(child)
    supervisor.kill()
    await supervisor.wait()
    for _ in range(100):
        if not _alive(child):
            break
        await asyncio.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        raise AssertionError(f"workerd {child} outlived its SIGKILLed supervisor")
