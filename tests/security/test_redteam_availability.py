"""Red team, availability: what a tenant does with the platform's own plumbing to stall
every other namespace (beyond the spin and heap storms of test_availability_walls.py).

- **One long `console.log` line.** workerd writes a tenant's console output to its
  stdout, a pipe the supervisor drains line by line. A line longer than the reader's
  buffer used to kill the drain (asyncio's `readline` limit, 64 KiB): the pipe then
  filled up, workerd blocked writing to it, every tenant of the process hung, and the
  replacement of the hung process failed on the same dead drain, so the slot was never
  filled again. The whole data plane was gone for good after two requests. The same
  in a Durable Object stalled the DO host, every namespace's objects with it.
- **Blame evasion.** The watchdog blames a namespace only when the hung process's last
  barrier round named it alone and was not *truncated*. Any request whose target was
  not known before its round marked the round truncated - including requests that can
  never run tenant code: `GET /` on a platform host (no worker), a host under the
  platform domain that names no namespace, a host nobody claimed. A spinning tenant
  that sends a few of those around each spin was never struck, only put on
  probation, again and again: it hung processes forever (`test_availability_walls.py`'s
  storm, plus noise). A round also counted as truncated past 256 targets, and every
  name in a request was a target, routed or not: 700 requests to made-up namespaces
  (`r1.workers.local/w/`) around each spin did the same - and put 256 made-up
  namespaces on probation per incident.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security

# One line of 200 KiB, then about 1 MiB more in ordinary lines per request: what a
# tenant logging a large JSON body or a base64 image does.
LOGGER = """\
export default {
  async fetch(request) {
    const u = new URL(request.url);
    const size = Number(u.searchParams.get("size") || "10");
    const lines = Number(u.searchParams.get("lines") || "1");
    for (let i = 0; i < lines; i++) console.log("L" + "x".repeat(size));
    return new Response("logged");
  },
};
"""

DO_LOGGER = """\
import { DurableObject } from "cloudflare:workers";

export class Chatty extends DurableObject {
  async log(size, lines) {
    for (let i = 0; i < lines; i++) console.log("D" + "y".repeat(size));
    return "logged";
  }
}

export default {
  async fetch(request, env) {
    const u = new URL(request.url);
    const size = Number(u.searchParams.get("size") || "10");
    const lines = Number(u.searchParams.get("lines") || "1");
    const name = u.searchParams.get("name") || "a";
    return new Response(await env.CHATTY.getByName(name).log(size, lines));
  },
};
"""

DO_TOML = """
[[durable_objects.bindings]]
name = "CHATTY"
class_name = "Chatty"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Chatty"]
"""


async def _victim_answers_within(walls: Walls, bound_s: float, path: str = "/vault/") -> float:
    """Seconds until the victim's worker answers 200 again (each try on a new
    connection, 2 s timeout), or fail after `bound_s`."""
    started = time.monotonic()
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=walls.gateway, timeout=2.0, limits=limits) as client:
        while time.monotonic() - started < bound_s:
            with contextlib.suppress(httpx.HTTPError):
                r = await client.get(path, headers={"host": walls.host(VICTIM)})
                if r.status_code == 200:
                    return time.monotonic() - started
            await asyncio.sleep(0.2)
    raise AssertionError(f"the victim got no answer for {bound_s:.0f} s after the attack")


async def _flood_log(walls: Walls, worker: str, query: str, times: int) -> None:
    for _ in range(times):
        with contextlib.suppress(httpx.HTTPError):
            await walls.attack(worker, f"/?{query}", timeout=5)


async def _gateway_processes(walls: Walls) -> int:
    if walls.kind == "servers":
        gateway = walls.extra["platform"].gateway
        return len([i for i in gateway.instances() if i.process.running])
    return len(walls.extra["dev"].workerd_pids())


async def test_a_long_console_line_stalls_no_one(walls: Walls) -> None:
    expected = await _gateway_processes(walls)
    await walls.attacker.deploy_js("logger", LOGGER)
    r = await walls.attack("logger", "/?size=10")
    assert (r.status_code, r.text) == (200, "logged"), r.text
    # A few long lines (each request may land on either process), then plenty of output.
    await _flood_log(walls, "logger", "size=200000", 6)
    await _flood_log(walls, "logger", "size=10000&lines=40", 12)
    took = await _victim_answers_within(walls, 15)
    print(f"long console line ({walls.kind}): the victim answered after {took:.1f} s")
    # Every gateway slot is (back) up, and the attacker's own logging still works.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and await _gateway_processes(walls) < expected:
        await asyncio.sleep(0.2)
    assert await _gateway_processes(walls) == expected
    r = await walls.attack("logger", "/?size=200000", timeout=10)
    assert (r.status_code, r.text) == (200, "logged"), r.text
    await walls.assert_victim_intact()


async def test_a_long_console_line_in_a_durable_object_stalls_no_one(walls: Walls) -> None:
    await walls.attacker.deploy_js("chatty", DO_LOGGER, DO_TOML)
    r = await walls.attack("chatty", "/?size=10", timeout=30)
    assert (r.status_code, r.text) == (200, "logged"), r.text
    await _flood_log(walls, "chatty", "size=200000", 3)
    await _flood_log(walls, "chatty", "size=10000&lines=40&name=b", 8)
    # The victim's Durable Object answers (its state read goes through the DO host).
    started = time.monotonic()
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            r = await walls.get(walls.host(VICTIM), "/vault/state", timeout=5)
            if r.status_code == 200 and r.json()["do"]["kv"] == "victim-do-value":
                break
        assert time.monotonic() - started < 20, "the victim's Durable Object stalled"
        await asyncio.sleep(0.5)
    r = await walls.attack("chatty", "/?size=200000&name=c", timeout=15)
    assert (r.status_code, r.text) == (200, "logged"), r.text
    await walls.assert_victim_intact()


SPIN = "export default {{ async fetch() {{ /* {n} */ while (true) {{}} }} }};"
# Requests that run no tenant code, to the attacker's host and to hosts of nobody.
NOISE = (("attacker.workers.local", "/"), ("no.such.workers.local", "/x/"),
         ("nobody-claimed.example", "/x/"))


async def _noise(client: httpx.AsyncClient) -> None:
    for host, path in NOISE:
        with contextlib.suppress(httpx.HTTPError):
            await client.get(path, headers={"host": host})


async def test_requests_that_run_no_code_do_not_blur_the_blame(walls: Walls) -> None:
    """The storm of test_availability_walls.py, each spin wrapped in noise: the spinning
    namespace is still struck and held back."""
    limits = httpx.Limits(max_keepalive_connections=0)
    tasks: list[asyncio.Task[None]] = []
    async with httpx.AsyncClient(base_url=walls.gateway, timeout=5.0, limits=limits) as noise:

        async def spin() -> None:
            with contextlib.suppress(httpx.HTTPError):
                await walls.attack("spin", "/", timeout=15)

        async def wrapped() -> None:
            # Noise before the spin, and noise that waits for the spin's round.
            tasks.extend(asyncio.create_task(_noise(noise)) for _ in range(3))
            await asyncio.sleep(0.005)
            tasks.append(asyncio.create_task(spin()))
            for _ in range(6):
                await asyncio.sleep(0.001)
                tasks.append(asyncio.create_task(_noise(noise)))

        for n in range(4):
            deployed = await walls.attacker.deploy(
                walls.attacker.project("spin", SPIN.format(n=f"noise-{n}")), ok=False)
            if deployed.code != 0:  # held back already
                break
            for _ in range(3):
                await wrapped()
                await asyncio.sleep(0.3)
            await asyncio.sleep(1.5)
        await asyncio.gather(*tasks, return_exceptions=True)
    try:
        held = await walls.admin.wdl("quarantine", "list", "--json")
        strikes = (await walls.admin.wdl("quarantine", "strikes", "--json")).json()
        assert any(q["namespace"] == ATTACKER and q.get("worker") is None
                   for q in held.json()), (held.out, strikes)
        assert not any(s["namespace"] == VICTIM and s["strikes"] for s in strikes), strikes
    finally:
        await walls.admin.wdl("quarantine", "lift", ATTACKER, "--note", "red team", ok=False)
    await _victim_answers_within(walls, 30)
    await walls.assert_victim_intact()


async def _crowd(walls: Walls, n: int, spin_path: str) -> None:
    """`n` requests to made-up namespaces, half before and half after one spin, each on
    a connection opened beforehand (so they all arrive within one barrier round)."""
    host, port = walls.gateway.removeprefix("http://").rsplit(":", 1)
    conns = await asyncio.gather(*[asyncio.open_connection(host, int(port))
                                   for _ in range(n + 1)])

    async def send(conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], name: str,
                   path: str) -> None:
        reader, writer = conn
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                     .encode())
        with contextlib.suppress(OSError, TimeoutError):
            await asyncio.wait_for(reader.read(100), 10)
        writer.close()

    tag = time.monotonic_ns()
    sends = [send(c, f"r{tag}x{i}.workers.local", "/w/") for i, c in enumerate(conns[:n // 2])]
    sends.append(send(conns[n // 2], walls.host(ATTACKER), spin_path))
    sends += [send(c, f"r{tag}y{i}.workers.local", "/w/")
              for i, c in enumerate(conns[n // 2 + 1:])]
    await asyncio.gather(*sends)


async def test_a_crowd_of_names_that_route_nowhere_does_not_blur_the_blame(
        walls: Walls) -> None:
    before = {s["namespace"]: s["strikes"] for s in (await walls.admin.wdl(
        "quarantine", "strikes", "--json")).json()}
    await walls.attacker.deploy_js("spin", SPIN.format(n="crowd"))
    try:
        for _ in range(3):
            await _crowd(walls, 700, "/spin/")
            await asyncio.sleep(2.0)
        deadline = time.monotonic() + 10
        while True:
            strikes = {s["namespace"]: s["strikes"] for s in (await walls.admin.wdl(
                "quarantine", "strikes", "--json")).json()}
            if strikes.get(ATTACKER, 0) > before.get(ATTACKER, 0) \
                    or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        assert strikes.get(ATTACKER, 0) > before.get(ATTACKER, 0), strikes
        assert strikes.get(VICTIM, 0) == 0, strikes
    finally:
        await walls.attacker.deploy_js("spin", "export default { fetch() { return "
                                               "new Response('calm'); } };")
        await walls.admin.wdl("quarantine", "lift", ATTACKER, "--note", "red team", ok=False)
    await _victim_answers_within(walls, 30)
    await walls.assert_victim_intact()
