"""Red team, Tail Workers (`tail_consumers`): events stay in their namespace.

A tail consumer is named by a worker name and resolved in the producer's own
namespace (its version's accepted event; the gateway's props). The attacker (a
deployer token of its namespace) tries to send its events to the victim's tail
worker (spam the victim's KV through it), and to receive the victim's events by
deploying tail workers and producers named like the victim's. The victim's own
producer -> tail worker pair works throughout (the positive control); the attacker
gets nothing of it, and the victim's tail worker gets nothing of the attacker.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Actor, Walls

pytestmark = pytest.mark.security

# Stores every event under "<scriptName>:<url path>" (so duplicates collapse) and
# answers /dump with the keys.
TAIL = """
export default {
  async tail(events, env) {
    for (const e of events) {
      const url = e.event && e.event.request ? new URL(e.event.request.url).pathname : "-";
      await env.LOG.put(`${e.scriptName}:${url}`, JSON.stringify(e));
    }
  },
  async fetch(req, env) {
    return Response.json((await env.LOG.list()).keys.map((k) => k.name).sort());
  },
};
"""
PRODUCER = """
export default { fetch(req) { console.log("secret-of", new URL(req.url).pathname);
                              return new Response("p"); } };
"""
KV = '\n[[kv_namespaces]]\nbinding = "LOG"\nid = "{kv}"\n'


def consumers(*names: str) -> str:
    return "tail_consumers = [" + ", ".join(f'{{ service = "{n}" }}' for n in names) + "]\n"


async def keys(walls: Walls, ns: str, worker: str) -> list[str]:
    r = await walls.get(walls.host(ns), f"/{worker}/")
    assert r.status_code == 200, r.text
    out: list[str] = r.json()
    return out


async def keys_until(walls: Walls, ns: str, worker: str, want: set[str]) -> list[str]:
    for _ in range(100):
        got = await keys(walls, ns, worker)
        if want <= set(got):
            return got
        await asyncio.sleep(0.2)
    return await keys(walls, ns, worker)


async def test_tail_events_never_cross_namespaces(walls: Walls) -> None:
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    attacker = walls.attacker
    await victim.deploy(victim.project("vtail", TAIL, KV.format(kv="vtail-log")))
    await victim.deploy(victim.project("vprod", PRODUCER, consumers("vtail")))
    await walls.get(walls.host(VICTIM), "/vprod/before")
    assert await keys_until(walls, VICTIM, "vtail", {"vprod:/before"}) == ["vprod:/before"]

    # 1. Another namespace's worker, in every spelling: refused before anything is written.
    for name in (f"{VICTIM}/vtail", f"{VICTIM}:vtail", f"../{VICTIM}/vtail",
                 f"vtail.{VICTIM}", "VTAIL", "__wdl_tail"):
        r = await attacker.deploy(attacker.project("spam", PRODUCER, consumers(name)), ok=False)
        assert r.code != 0, r.text
        text = " ".join(r.text.split())
        assert "tail_consumer_not_in_namespace" in text or "invalid_tail_consumer" in text, text
    # ... and through the API itself, without the CLI.
    async with httpx.AsyncClient(base_url=walls.api, timeout=30) as client:
        api = await client.post(
            f"/v1/namespaces/{ATTACKER}/workers/spam/versions",
            headers={"authorization": f"Bearer {attacker.env['WDL_TOKEN']}"},
            json={"main_module": "index.js", "compatibility_date": "2025-11-17",
                  "modules": [{"name": "index.js", "type": "esm",
                               "content_b64": "ZXhwb3J0IGRlZmF1bHQge307"}],
                  "tail_consumers": [f"{VICTIM}/vtail"]})
        assert api.status_code == 400, api.text
        assert api.json()["error"]["code"] == "tail_consumer_not_in_namespace", api.text

    # 2. The victim's tail worker's name in the attacker's namespace: resolves there (no
    # such worker: a warning), so the attacker's traffic never reaches the victim's KV.
    r = await attacker.deploy(attacker.project("spam", PRODUCER, consumers("vtail")))
    warnings: list[Any] = r.json()["warnings"]
    assert warnings and "has no active version in namespace attacker" in warnings[0], warnings
    for i in range(5):
        assert (await walls.attack("spam", f"/spam{i}")).status_code == 200

    # 3. Tail workers and producers named like the victim's, in the attacker's namespace:
    # the victim's traffic feeds only the victim's own tail worker.
    await attacker.deploy(attacker.project("vtail", TAIL, KV.format(kv="stolen")))
    await attacker.deploy(attacker.project("vprod", PRODUCER, consumers("vtail")))
    await walls.get(walls.host(VICTIM), "/vprod/after")
    await walls.attack("vprod", "/own")  # the attacker's own pair works, for itself
    assert await keys_until(walls, ATTACKER, "vtail", {"vprod:/own"}) == ["vprod:/own"]
    victim_keys = await keys_until(walls, VICTIM, "vtail", {"vprod:/after"})
    # A late spam event would have arrived by now (the attacker's own event did).
    await asyncio.sleep(1)
    assert await keys(walls, VICTIM, "vtail") == victim_keys == ["vprod:/after", "vprod:/before"]
    assert await keys(walls, ATTACKER, "vtail") == ["vprod:/own"]
    dumped = json.dumps(await keys(walls, ATTACKER, "vtail"))
    assert "/after" not in dumped and "/before" not in dumped
    await walls.assert_victim_intact()
