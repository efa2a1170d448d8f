"""connect() (cloudflare:sockets) under the namespace's egress policy, on the real servers
and real workerd: from a worker, a Durable Object and a loader child.

The platform runs under the operators' test setting (loopback allowed), so a TCP echo
server of this test on 127.0.0.1 stands for "a database on the operator's network"; the
namespace policy is then the only thing between the tenant and it. The attacks (every
other spelling, metadata, another namespace's allow list) are in
tests/security/test_redteam_sockets.py and test_redteam_egress.py.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.platform_stack import Stack, platform_stack

pytestmark = pytest.mark.integration

COMPONENTS = frozenset({"api", "projector", "state", "data", "gateway", "objects"})
LOST = "error: Network connection lost."

# The tenant: one helper, run by the worker, its object and a loader child (the child
# gets the same function's source). `hold` opens that many sockets first and keeps them.
PROBE = r"""
import { DurableObject } from "cloudflare:workers";
import { connect } from "cloudflare:sockets";

async function probe(to, tls, hold) {
  const held = [];
  try {
    for (let i = 0; i < hold; i++) {
      const h = connect(to);
      const w = h.writable.getWriter();
      await w.write(new TextEncoder().encode("hold"));
      w.releaseLock();
      const r = h.readable.getReader();
      await r.read();
      r.releaseLock();
      held.push(h);
    }
    const s = connect(to, tls ? { secureTransport: tls } : {});
    let sock = s;
    if (tls === "starttls") sock = s.startTls();
    const w = sock.writable.getWriter();
    await w.write(new TextEncoder().encode("ping " + to));
    const r = sock.readable.getReader();
    const { value, done } = await r.read();
    await sock.close();
    return done ? "closed" : "echo " + new TextDecoder().decode(value);
  } catch (e) {
    return "error: " + String(e && e.message || e);
  } finally {
    for (const h of held) await h.close();
  }
}

const CHILD = "import { connect } from 'cloudflare:sockets';\n" + probe.toString() +
  "\nexport default { async fetch(r) { const u = new URL(r.url);" +
  " return new Response(await probe(u.searchParams.get('to'), u.searchParams.get('tls')," +
  " Number(u.searchParams.get('hold') || 0))); } };";

export class Courier extends DurableObject {
  async go(to, tls, hold) { return probe(to, tls, hold); }
}

export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const to = u.searchParams.get("to"), tls = u.searchParams.get("tls");
    const hold = Number(u.searchParams.get("hold") || 0);
    if (u.pathname.endsWith("/worker")) return new Response(await probe(to, tls, hold));
    if (u.pathname.endsWith("/object")) {
      return new Response(await env.COURIER.getByName("c").go(to, tls, hold));
    }
    if (u.pathname.endsWith("/child")) {
      const child = env.LOADER.get("sockets-child", () => ({
        compatibilityDate: "2025-06-01", mainModule: "c.js", modules: { "c.js": CHILD } }));
      return child.getEntrypoint().fetch(request);
    }
    return new Response("?", { status: 404 });
  },
};
"""

TOML = """
worker_loaders = [{binding = "LOADER"}]

[[durable_objects.bindings]]
name = "COURIER"
class_name = "Courier"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Courier"]
"""

PLACES = ("/worker", "/object", "/child")


class Echo:
    """A TCP echo server on loopback that counts the connections reaching it."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> Echo:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), 5)


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str,
                unique_name: Callable[[str], str], tmp_path: Path,
                monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    # A small connection bound, to see it hold (the default is 64).
    monkeypatch.setenv("WDL_SOCKETS_PER_NAMESPACE", "2")
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=COMPONENTS, egress_allow_loopback=True) as s:
        yield s


async def probe(stack: Stack, ns: str, place: str, to: str, tls: str = "",
                hold: int = 0) -> str:
    params = {"to": to, "hold": str(hold), **({"tls": tls} if tls else {})}
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{stack.gateway}/probe{place}", params=params,
                             headers={"host": f"{ns}.workers.local"})
    assert r.status_code == 200, (place, r.status_code, r.text)
    return r.text


def gateway_log(stack: Stack) -> str:
    """What the gateway's workerd processes wrote (their last lines)."""
    gateway = stack.platform.gateway
    assert gateway is not None
    return "\n".join(i.process.output() for i in gateway.instances())


def recent(stack: Stack) -> list[str]:
    """The gateway's last lines about connect()s, for a failing assertion."""
    return [x for x in gateway_log(stack).splitlines() if "egress" in x][-20:]


async def set_policy(stack: Stack, ns: str, *policy: str) -> None:
    await stack.wdl("ns", "egress", "set", *policy, "--ns", ns)
    await asyncio.sleep(1.5)  # the objects' route cache (1 s)


async def test_connect_from_a_worker_an_object_and_a_loader_child(stack: Stack) -> None:
    await stack.wdl("ns", "create", "acme")
    project = stack.project("probe", PROBE)
    (project / "wrangler.toml").write_text((project / "wrangler.toml").read_text() + TOML)
    await stack.deploy("acme", project)
    async with Echo() as db, Echo() as other:
        # `public` + the operators' loopback setting: reached from all three places; the
        # spelling is normalised before it is dialled.
        for place in PLACES:
            for to in (f"127.0.0.1:{db.port}", f"0x7f.1:{db.port}"):
                assert await probe(stack, "acme", place, to) == f"echo ping {to}", \
                    (place, to, recent(stack))
        assert db.connections == 6

        # `allow` with a host:port pattern: that port only.
        await set_policy(stack, "acme", "allow", "--allow", f"127.0.0.1:{db.port}")
        for place in PLACES:
            to = f"127.0.0.1:{db.port}"
            assert await probe(stack, "acme", place, to) == f"echo ping {to}", \
                (place, recent(stack))
            # A port outside the pattern, where a server listens: never reached.
            assert await probe(stack, "acme", place, f"127.0.0.1:{other.port}") == LOST
            # Another name for the same host is not the listed host.
            assert await probe(stack, "acme", place, f"localhost:{db.port}") == LOST
        assert db.connections == 9 and other.connections == 0
        # Each refusal is logged naming the namespace, the address and the policy (the
        # tenant only sees "Network connection lost."; the objects process logs alike).
        log = gateway_log(stack)
        assert (f"wdl egress: connect() of namespace acme to 127.0.0.1:{other.port} refused "
                f"by the egress policy (allow): port {other.port} of 127.0.0.1 is not in the "
                "allow list") in log
        assert (f"connect() of namespace acme to localhost:{db.port} refused by the egress "
                "policy (allow): localhost is not in the allow list") in log

        # The bound of open connections per namespace and process (2 here): a third
        # connection while two are held is refused, and the bound is released after.
        to = f"127.0.0.1:{db.port}"
        assert await probe(stack, "acme", "/worker", to, hold=1) == f"echo ping {to}"
        assert await probe(stack, "acme", "/worker", to, hold=2) == LOST
        assert await probe(stack, "acme", "/object", to, hold=2) == LOST
        assert await probe(stack, "acme", "/worker", to) == f"echo ping {to}"

        # TLS from the tenant: workerd does not hand a TLS CONNECT to an entrypoint, and
        # a socket that came through one cannot startTls() (docs/egress.md).
        on = await probe(stack, "acme", "/worker", to, tls="on")
        assert on == "error: Incoming CONNECT with TLS not supported", on
        starttls = await probe(stack, "acme", "/worker", to, tls="starttls")
        assert starttls == "error: startTls() is not supported on this connection.", starttls

        # `deny`: nothing, from anywhere.
        before = db.connections
        await set_policy(stack, "acme", "deny")
        for place in PLACES:
            assert await probe(stack, "acme", place, f"127.0.0.1:{db.port}") == LOST, place
        assert db.connections == before
        assert other.connections == 0


# Connections and fetches of one request, in order: each `c` a connect() to `to` (one
# byte echoed, then closed), each `f` a fetch() of `url`. `forge`: one more connect()
# through the real `cloudflare:sockets` (a computed import the gateway cannot rewrite)
# naming a request of nobody's.
BUDGET = r"""
import { connect } from "cloudflare:sockets";

async function once(to) {
  const s = connect(to);
  const w = s.writable.getWriter();
  await w.write(new TextEncoder().encode("x"));
  const r = s.readable.getReader();
  const { done } = await r.read();
  await s.close();
  return done ? "closed" : "ok";
}

export default {
  async fetch(request) {
    const u = new URL(request.url);
    const to = u.searchParams.get("to"), url = u.searchParams.get("url");
    const out = [];
    for (const step of u.searchParams.get("steps") || "") {
      try {
        if (step === "c") out.push(await once(to));
        else if (step === "i") {
          const s = connect(to);
          out.push((await s.opened).remoteAddress);
          await s.close();
        } else { await (await fetch(url)).arrayBuffer(); out.push("ok"); }
      } catch (e) {
        out.push("error: " + String(e && e.message || e));
      }
    }
    if (u.searchParams.get("forge")) {
      const real = await import(["cloudflare", "sockets"].join(":"));
      const [host, port] = [to.slice(0, to.lastIndexOf(":")), to.slice(to.lastIndexOf(":") + 1)];
      try {
        const s = real.connect(`${host}.${crypto.randomUUID()}.wdl-request:${port}`);
        const w = s.writable.getWriter();
        await w.write(new TextEncoder().encode("x"));
        const { done } = await s.readable.getReader().read();
        out.push(done ? "closed" : "forged ok");
      } catch (e) {
        out.push("error: " + String(e && e.message || e));
      }
    }
    return Response.json(out);
  },
};
"""


async def test_each_connection_counts_against_the_request_subrequest_budget(
        stack: Stack) -> None:
    hits = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal hits
        hits += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
        await writer.drain()
        writer.close()

    web = await asyncio.start_server(handle, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{web.sockets[0].getsockname()[1]}/x"
    await stack.wdl("ns", "create", "acme")
    await stack.deploy("acme", stack.project("budget", BUDGET))

    async def run(steps: str, to: str, forge: bool = False) -> list[str]:
        params = {"to": to, "url": url, "steps": steps, **({"forge": "1"} if forge else {})}
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.get(f"{stack.gateway}/budget/", params=params,
                                 headers={"host": "acme.workers.local"})
        assert r.status_code == 200, r.text
        answer: list[str] = r.json()
        return answer

    async with web, Echo() as db:
        to = f"127.0.0.1:{db.port}"
        # The platform's default budget (1000): five connections are nothing.
        assert await run("ccccc", to) == ["ok"] * 5
        await stack.wdl("ns", "limits", "set", "--ns", "acme", "--subrequests", "3")
        await asyncio.sleep(1.5)  # the route caches
        before = db.connections
        # Three subrequests per request, connections and fetches alike.
        assert await run("ccccc", to) == ["ok"] * 3 + [LOST] * 2, recent(stack)
        assert db.connections == before + 3
        assert await run("fcfcf", to) == ["ok"] * 3 + [LOST, "error: Too many subrequests."]
        assert await run("ffcc", to) == ["ok", "ok", "ok", LOST]
        # Each request has its own budget.
        assert await run("cc", to) == ["ok", "ok"]
        # What the tenant's socket says it opened is what it asked for.
        assert await run("i", to) == [to]
        assert ("wdl egress: connect() of namespace acme to 127.0.0.1:"
                f"{db.port} refused by the egress policy (public): Too many subrequests."
                ) in gateway_log(stack), recent(stack)
        # A made-up request name in the address is refused, not dialled.
        before = db.connections
        assert await run("", to, forge=True) == [LOST]
        assert db.connections == before
        assert "this subrequest does not belong to a live request" in gateway_log(stack)
