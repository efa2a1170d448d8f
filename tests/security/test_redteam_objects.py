"""Red team, availability of Durable Objects: one namespace's object that spins must not
take every other namespace's objects down, and the blame must land on it.

Every namespace's Durable Objects run in the DO host: one workerd process per host
(services/objects/service.py), not the gateway's pool. Before its watchdog
(services/objects/watchdog.py) one call to an object method that spins hung the host for
good - every object of every namespace stopped answering for as long as the platform ran
(manual run: minutes, the host's workerd spinning a core) - and nobody was blamed.

Now the host is replaced within seconds, on the same sockets, and runs in careful mode
afterwards: the next spin is announced, so it strikes the namespace that did it (and
only it). A module of its own: a hung host would fail every later test of its platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security

SPINNER = """\
import { DurableObject } from "cloudflare:workers";

export class Spinner extends DurableObject {
  async spin() { while (true) {} }
}

export default {
  async fetch(request, env) {
    return new Response(String(await env.SPINNER.getByName("a").spin()));
  },
};
"""

TOML = """
[[durable_objects.bindings]]
name = "SPINNER"
class_name = "Spinner"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Spinner"]
"""

BOUND_S = 10.0


async def _victims_object_answers_within(walls: Walls, bound: float) -> float:
    """Seconds until the victim's object answered again (fails past `bound`)."""
    started = time.monotonic()
    while time.monotonic() - started < bound:
        with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
            r = await walls.get(walls.host(VICTIM), "/vault/state", timeout=3)
            if r.status_code == 200 and r.json()["do"]["kv"] == "victim-do-value":
                return time.monotonic() - started
        await asyncio.sleep(0.25)
    raise AssertionError(f"the victim's Durable Object gave no answer for {bound:.0f} s")


async def _spin_once(walls: Walls) -> float:
    spin = asyncio.create_task(walls.attack("spinner", "/", timeout=BOUND_S + 10))
    try:
        await asyncio.sleep(0.5)  # the host is stuck by now
        return await _victims_object_answers_within(walls, BOUND_S)
    finally:
        spin.cancel()
        with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
            await spin


async def _strikes(walls: Walls) -> dict[str, Any]:
    rows = (await walls.admin.wdl("quarantine", "strikes", "--json")).json()
    return {r["namespace"]: r for r in rows}


async def test_a_spinning_object_stalls_other_namespaces_objects_for_seconds_at_most(
        walls: Walls) -> None:
    await walls.attacker.deploy_js("spinner", SPINNER, TOML)
    first = await _spin_once(walls)
    # Nothing was announced before the first hang: nobody can be blamed for it yet.
    assert ATTACKER not in await _strikes(walls)
    second = await _spin_once(walls)
    print(f"DO host ({walls.kind}): the victim's object answered again after "
          f"{first:.2f} s and {second:.2f} s")
    strikes = await _strikes(walls)
    assert strikes[ATTACKER]["strikes"] == 1, strikes
    assert strikes[ATTACKER]["last"]["worker"] == "spinner"
    assert VICTIM not in strikes
    await walls.assert_victim_intact()
