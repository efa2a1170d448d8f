"""Red team, egress: a namespace's egress policy holds for every fetch its code makes.

The operator's test setting lets tenants reach loopback (WDL_EGRESS_ALLOW_LOOPBACK=1),
so a server of this test on 127.0.0.1 stands for "anywhere on the internet" and the
*namespace policy* is the only thing between the tenant and it. An admin sets the
attacker's policy to `deny` (then to an allow list without that server); the attacker
then fetches the server from the places its code runs:

- the worker itself (held before this pass: WdlEgress judges every fetch);
- a **Durable Object** of the worker: its fetch() went straight to the DO host's
  network service, which knows nothing of namespaces, so the policy was bypassed by
  moving the fetch into an object (docs/durable-objects.md listed it as not done).

And its connect()s (cloudflare:sockets), from the worker, an object and a loader child:
a port outside the allow list's pattern, another spelling of the listed host, another
namespace's allow list and `deny` (the spellings without the loopback setting:
test_redteam_sockets.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.integration.test_sockets import LOST, Echo
from tests.integration.test_sockets import PROBE as SOCKET_PROBE
from tests.integration.test_sockets import TOML as SOCKET_TOML
from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security

WALLS_ENV = {"WDL_EGRESS_ALLOW_LOOPBACK": "1"}

PROBE = """\
import { DurableObject } from "cloudflare:workers";

async function attempt(url) {
  try {
    const r = await fetch(url);
    return "reached " + r.status + " " + (await r.text());
  } catch (e) {
    return "refused: " + String(e && e.message || e);
  }
}

export class Courier extends DurableObject {
  async go(url) { return attempt(url); }
  async fetch(request) { return new Response(await attempt(request.headers.get("x-to"))); }
}

export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const to = u.searchParams.get("to");
    if (u.pathname === "/worker") return new Response(await attempt(to));
    if (u.pathname === "/object") return new Response(await env.COURIER.getByName("c").go(to));
    if (u.pathname === "/object-fetch") {
      return env.COURIER.getByName("f").fetch("http://do/", { headers: { "x-to": to } });
    }
    return new Response("?", { status: 404 });
  },
};
"""

TOML = """
[[durable_objects.bindings]]
name = "COURIER"
class_name = "Courier"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Courier"]
"""


class Outside:
    """An HTTP server on loopback that counts the requests reaching it."""

    def __init__(self) -> None:
        self.hits = 0
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            self.hits += 1
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 7\r\nconnection: close\r\n\r\n"
                         b"outside")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Outside:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def outside() -> AsyncIterator[Outside]:
    async with Outside() as server:
        yield server


@pytest.mark.parametrize("policy", [["deny"], ["allow", "--allow", "api.example.com:443"]],
                         ids=["deny", "allow-list"])
async def test_the_namespace_policy_holds_inside_durable_objects(
        walls: Walls, outside: Outside, policy: list[str]) -> None:
    await walls.attacker.deploy_js("courier", PROBE, TOML)
    url = f"http://127.0.0.1:{outside.port}/"
    # With the default policy (public + the test setting) every path reaches the server:
    # so a refusal below is the namespace policy's doing, nothing else.
    await walls.admin.wdl("ns", "egress", "set", "public", "--ns", ATTACKER)
    for path in ("/worker", "/object", "/object-fetch"):
        r = await walls.attack("courier", path, params={"to": url}, timeout=30)
        assert r.text == "reached 200 outside", (path, r.text)
    before = outside.hits
    await walls.admin.wdl("ns", "egress", "set", *policy, "--ns", ATTACKER)
    await asyncio.sleep(1.5)  # the DO host's route cache (1 s)
    try:
        for path in ("/worker", "/object", "/object-fetch"):
            r = await walls.attack("courier", path, params={"to": url}, timeout=30)
            assert r.text.startswith("refused: WDL egress policy of namespace attacker "
                                     "refused"), (path, r.text)
        assert outside.hits == before
    finally:
        await walls.admin.wdl("ns", "egress", "set", "public", "--ns", ATTACKER)
    await walls.assert_victim_intact()


# --- connect() (workerd/gateway/sockets.js), under the same policy ----------------------
# Here too the loopback test setting makes 127.0.0.1 "the internet": the namespace's
# policy is the only wall, and an echo server counts what reaches it.


@pytest.fixture
async def echoes() -> AsyncIterator[tuple[Echo, Echo]]:
    async with Echo() as listed, Echo() as unlisted:
        yield listed, unlisted


async def sock(walls: Walls, place: str, to: str) -> str:
    r = await walls.attack("sockets", place, params={"to": to, "hold": "0"}, timeout=30)
    assert r.status_code == 200, (place, to, r.status_code, r.text)
    return r.text


async def test_connect_holds_to_the_port_and_host_of_the_allow_list(
        walls: Walls, echoes: tuple[Echo, Echo]) -> None:
    listed, unlisted = echoes
    await walls.attacker.deploy_js("sockets", SOCKET_PROBE, SOCKET_TOML)
    await walls.admin.wdl("ns", "egress", "set", "allow", "--allow",
                          f"127.0.0.1:{listed.port}", "--ns", ATTACKER)
    await asyncio.sleep(1.5)  # the DO host's route cache (1 s)
    try:
        for place in ("/worker", "/object", "/child"):
            to = f"127.0.0.1:{listed.port}"
            # The listed host:port is reached: so the refusals below are the policy's.
            assert await sock(walls, place, to) == f"echo ping {to}", place
            for to in (f"127.0.0.1:{unlisted.port}",  # a port outside the pattern
                       f"localhost:{listed.port}",     # another name of the host
                       f"[::1]:{listed.port}"):        # another address of the host
                assert await sock(walls, place, to) == LOST, (place, to)
        assert listed.connections == 3 and unlisted.connections == 0
    finally:
        await walls.admin.wdl("ns", "egress", "set", "public", "--ns", ATTACKER)
    await walls.assert_victim_intact()


async def test_an_attacker_cannot_use_the_victims_allow_list_nor_escape_deny(
        walls: Walls, echoes: tuple[Echo, Echo]) -> None:
    """The victim lists its database; the attacker (deny, then an allow list of its own)
    connects to that database from everywhere its code runs: refused, never reached."""
    victim_db, _ = echoes
    to = f"127.0.0.1:{victim_db.port}"
    await walls.attacker.deploy_js("sockets", SOCKET_PROBE, SOCKET_TOML)
    await walls.admin.wdl("ns", "egress", "set", "allow", "--allow", to, "--ns", VICTIM)
    try:
        for policy in (["deny"], ["allow", "--allow", "api.example.com:443"]):
            await walls.admin.wdl("ns", "egress", "set", *policy, "--ns", ATTACKER)
            await asyncio.sleep(1.5)
            for place in ("/worker", "/object", "/child"):
                assert await sock(walls, place, to) == LOST, (policy, place)
        assert victim_db.connections == 0
    finally:
        await walls.admin.wdl("ns", "egress", "set", "public", "--ns", ATTACKER)
        await walls.admin.wdl("ns", "egress", "set", "public", "--ns", VICTIM)
    await walls.assert_victim_intact()
