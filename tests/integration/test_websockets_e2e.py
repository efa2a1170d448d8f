"""WebSockets through the gateway, end to end: a tenant's `WebSocketPair` echo answers
101, echoes text and binary, close codes and reasons travel both ways, and a socket
stays on the version that accepted it when a new one is promoted (new sockets get the
new version). Counted in `wdl_gateway_websockets_total`. Real servers and `wdl dev`.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as connect_sync

from harness.endpoints import Endpoints
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import Stack, platform_stack

ECHO = """
const VERSION = %s;
export default {
  async fetch(request) {
    if (request.headers.get("upgrade") !== "websocket") return new Response("http " + VERSION);
    const [client, server] = Object.values(new WebSocketPair());
    server.accept();
    server.addEventListener("message", (event) => {
      if (event.data === "version") server.send("version " + VERSION);
      else if (event.data === "close-me") server.close(4003, "server-bye");
      else server.send(event.data);  // text as text, binary as binary
    });
    // The client's close, answered with what arrived: its code + 1 and reason.
    server.addEventListener("close", (event) => {
      server.close(event.code + 1, `got ${event.code} ${event.reason}`);
    });
    return new Response(null, { status: 101, webSocket: client });
  },
};
"""


def write_project(tmp: Path, version: str) -> Path:
    directory = tmp / f"ws-{version}"
    (directory / "src").mkdir(parents=True, exist_ok=True)
    (directory / "wrangler.toml").write_text(
        'name = "app"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n')
    (directory / "src" / "index.js").write_text(ECHO % json.dumps(version))
    return directory


def _sock(base: str) -> socket.socket:
    parts = urlsplit(base)
    return socket.create_connection((parts.hostname, parts.port))


async def open_ws(gateway: str, ns: str) -> ClientConnection:
    # The gateway routes by Host: the URI names the namespace host, the socket the gateway.
    return await connect(f"ws://{ns}.workers.local/app/socket", sock=_sock(gateway),
                         open_timeout=20)


async def ask(ws: ClientConnection, message: str | bytes) -> str | bytes:
    await ws.send(message)
    return await asyncio.wait_for(ws.recv(), 10)


def closed_with(ws: ClientConnection | SyncConnection) -> tuple[int, str] | None:
    """The code and reason of the close frame the client received."""
    frame = ws.protocol.close_rcvd
    return None if frame is None else (frame.code, frame.reason)


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        yield stack


async def websockets_counted(stack: Stack, ns: str) -> float:
    assert stack.platform.data is not None
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(stack.platform.data.url + "/metrics", headers={
            "authorization": "Bearer wdl-internal-test-token"})
    line = 'wdl_gateway_websockets_total{namespace="' + ns + '",worker="app"} '
    match = re.search("^" + re.escape(line) + r"(\S+)$", r.text, re.M)
    return float(match.group(1)) if match else 0.0


async def test_websockets_echo_close_both_ways_and_stay_on_their_version(
        stack: Stack, unique_name: Callable[[str], str]) -> None:
    ns = unique_name("ws")
    await stack.wdl("ns", "create", ns)
    await stack.deploy(ns, write_project(stack.tmp, "one"))

    old = await open_ws(stack.gateway, ns)
    assert old.response is not None and old.response.status_code == 101
    assert await ask(old, "hello") == "hello"
    binary = bytes(range(256)) * 4
    assert await ask(old, binary) == binary
    assert await ask(old, "version") == "version one"

    # A promote while it is open: the open socket stays on its version, new ones do not.
    await stack.deploy(ns, write_project(stack.tmp, "two"))
    assert await ask(old, "version") == "version one"
    assert await ask(old, "still here") == "still here"
    new = await open_ws(stack.gateway, ns)
    assert await ask(new, "version") == "version two"
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(stack.gateway + "/app/", headers={"host": f"{ns}.workers.local"})
    assert r.text == "http two"

    # Client -> tenant: the code and reason arrive (the tenant answers them back).
    await old.close(4001, "client-bye")
    assert closed_with(old) == (4002, "got 4001 client-bye")
    # Tenant -> client: its code and reason arrive.
    await new.send("close-me")
    await asyncio.wait_for(new.wait_closed(), 10)
    assert closed_with(new) == (4003, "server-bye")

    # Counted: two upgrades accepted (flushed within about a second).
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and await websockets_counted(stack, ns) < 2:
        await asyncio.sleep(0.3)
    assert await websockets_counted(stack, ns) == 2


def test_wdl_dev_passes_websockets(dev: Dev, tmp_path: Path) -> None:
    dev.start()
    dev.cli("ns", "create", "demo")
    dev.cli("deploy", str(write_project(tmp_path, "dev")), "--ns", "demo")
    sock = socket.create_connection(("127.0.0.1", dev.gateway_port))
    with connect_sync("ws://demo.workers.local/app/socket", sock=sock,
                      open_timeout=20) as ws:
        ws.send("hi")
        assert ws.recv(timeout=10) == "hi"
        ws.send(b"\x00\xff")
        assert ws.recv(timeout=10) == b"\x00\xff"
        ws.send("version")
        assert ws.recv(timeout=10) == "version dev"
        ws.close(4100, "done")
        assert closed_with(ws) == (4101, "got 4100 done")
    assert dev.interrupt() == 0
