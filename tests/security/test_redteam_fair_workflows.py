"""Red team, fair shares, workflow engine: what one namespace makes the engine hold.

The engine holds every instance in memory (its params, its recorded steps, its events)
and replays its history on every invocation. Step values and errors count in the
instance's 32 MiB history bound; *events* did not: `sendEvent` takes payloads of up to
1 MiB, 1,024 of them an instance, so one instance held 1 GiB of the engine's memory and
10,000 live instances of one namespace 10 TB. Measured on main: 40 events of 0.9 MB
(36 MB) all accepted by one instance waiting for another event type.

Nor did anything bound what a namespace's *live instances* hold together: 10,000 of
them (the bound of unfinished instances) each with 1 MiB of params and 32 MiB of
history is 330 GB. Measured on main with the namespace bound below: 40 instances with
0.9 MB params each (54 MB) all created, the bound (40 MB) ignored.

Creates at once raced past that bound: each counted the live instances before any of
them was written. Measured on main: 200 concurrent `create()` made 200 live instances
of a namespace bounded to 50.

And `restart` of a finished instance made it live again without counting it: measured
on main, 50 instances created and terminated, 50 more created, then the first 50
restarted: 100 live instances of a namespace bounded to 50.

A held namespace (containment: its workers hung the data plane too often) cannot run
its instances, yet each of them asked the gateway again every 5 s at most: measured on
main, 219 invocations in 15 s for 50 instances - ~2,900 a second for the 10,000 a
namespace may have, for as long as the hold lasts.

Real servers (Kafka, Redis, PostgreSQL, workerd), the workflows engine in-process; the
attacker drives the engine with its own worker's binding only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from harness.endpoints import Endpoints
from services.workflows.engine import Limits
from tests.security.conftest import SERVER_COMPONENTS, _servers
from tests.security.rig import ATTACKER, Walls

pytestmark = pytest.mark.security

HISTORY_BYTES = Limits().max_history_bytes  # 32 MiB: the engine's bound per instance
EVENTS = 40
EVENT_CHARS = 900_000  # under the 1 MiB payload bound (and Kafka's 1 MB record)

# The namespace's bound here (the platform default: 1 GiB); above one instance's history
# bound, so the events test meets that one first.
NAMESPACE_BYTES = 40_000_000
MAX_INSTANCES = 50  # unfinished instances of a namespace here (the default: 10,000)
WALLS_ENV = {"WDL_WORKFLOWS_MAX_NAMESPACE_BYTES": str(NAMESPACE_BYTES),
             "WDL_WORKFLOWS_MAX_INSTANCES": str(MAX_INSTANCES)}
INSTANCES = 60
RACERS = 200  # creates at once, four times the bound of live instances
PARAMS_CHARS = 900_000

HOARDER = """\
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Hoard extends WorkflowEntrypoint {
  async run(event, step) {
    // Waits for an event nobody sends: the others pile up unconsumed.
    return await step.waitForEvent("never", { type: "never", timeout: "1 hour" });
  }
}

export default {
  async fetch(request, env) {
    if (new URL(request.url).pathname === "/race") {
      // Creates at once: each was counted before any of them was written.
      const results = await Promise.allSettled(
        Array.from({ length: RACERS }, () => env.HOARD.create()));
      const made = results.filter((r) => r.status === "fulfilled").map((r) => r.value);
      const refused = results.find((r) => r.status === "rejected");
      for (const instance of made) await instance.terminate();
      return Response.json({ made: made.length,
                             error: refused ? String(refused.reason.message) : null });
    }
    if (new URL(request.url).pathname === "/restart") {
      // Finished instances come back to life by `restart`, past the bound of live ones.
      const old = [];
      for (let i = 0; i < MAX_INSTANCES; i++) old.push(await env.HOARD.create());
      for (const instance of old) await instance.terminate();
      const live = [];
      for (let i = 0; i < MAX_INSTANCES; i++) live.push(await env.HOARD.create());
      let restarted = 0;
      let error = null;
      try {
        for (const instance of old) { await instance.restart(); restarted++; }
      } catch (err) {
        error = String(err && err.message || err);
      }
      for (const instance of [...old, ...live]) {
        try { await instance.terminate(); } catch {}
      }
      return Response.json({ live: live.length + restarted, error });
    }
    if (new URL(request.url).pathname === "/many") {
      const params = { blob: "p".repeat(PARAMS_CHARS) };
      const made = [];
      let error = null;
      try {
        for (let i = 0; i < INSTANCES; i++) made.push(await env.HOARD.create({ params }));
      } catch (err) {
        error = String(err && err.message || err);
      }
      for (const instance of made) await instance.terminate();
      return Response.json({ made: made.length, error });
    }
    const instance = await env.HOARD.create();
    const payload = "x".repeat(EVENT_CHARS);
    let sent = 0;
    let error = null;
    try {
      for (; sent < EVENTS; sent++) await instance.sendEvent({ type: "junk", payload });
    } catch (err) {
      error = String(err && err.message || err);
    }
    await instance.terminate();
    return Response.json({ sent, error });
  },
};
""".replace("EVENT_CHARS", str(EVENT_CHARS)).replace("EVENTS", str(EVENTS)) \
   .replace("PARAMS_CHARS", str(PARAMS_CHARS)).replace("MAX_INSTANCES", str(MAX_INSTANCES)) \
   .replace("INSTANCES", str(INSTANCES)).replace("RACERS", str(RACERS))

HOARDER_TOML = """
[[workflows]]
name = "hoard"
binding = "HOARD"
class_name = "Hoard"
"""


@pytest.fixture(scope="module")
async def walls(services: Endpoints, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Walls]:
    """The real servers only, with the workflows engine in-process."""
    tmp = tmp_path_factory.mktemp("walls-redteam-workflows")
    components = SERVER_COMPONENTS | frozenset({"workflows"})
    async for walls in _servers(services, tmp, dict(WALLS_ENV), components):
        yield walls


async def test_events_count_in_the_instance_history_bound(walls: Walls) -> None:
    await walls.attacker.deploy_js("hoarder", HOARDER, HOARDER_TOML)
    r = await walls.attack("hoarder", "/", timeout=180)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    held = doc["sent"] * (EVENT_CHARS + 2)
    assert held <= HISTORY_BYTES, (
        f"one instance of {ATTACKER} holds {doc['sent']} unconsumed events, {held} bytes, "
        f"past the {HISTORY_BYTES}-byte history bound ({doc['error']})")
    assert doc["error"] is not None and "history" in doc["error"], doc
    await walls.assert_victim_intact()


async def test_live_instances_of_a_namespace_have_one_bound_in_bytes(walls: Walls) -> None:
    await walls.attacker.deploy_js("hoarder", HOARDER, HOARDER_TOML)
    r = await walls.attack("hoarder", "/many", timeout=180)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    held = doc["made"] * PARAMS_CHARS
    assert held <= NAMESPACE_BYTES, (
        f"{doc['made']} live instances of {ATTACKER} hold {held} bytes of params, past the "
        f"namespace's bound of {NAMESPACE_BYTES} ({doc['error']})")
    assert doc["error"] is not None and "workflow_state_full" in doc["error"], doc
    await walls.assert_victim_intact()


async def test_restarting_finished_instances_counts_against_the_bound(walls: Walls) -> None:
    await walls.attacker.deploy_js("hoarder", HOARDER, HOARDER_TOML)
    r = await walls.attack("hoarder", "/restart", timeout=180)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert doc["live"] <= MAX_INSTANCES, (
        f"{doc['live']} live instances of {ATTACKER} after restarts, its bound "
        f"{MAX_INSTANCES} ({doc['error']})")
    assert doc["error"] is not None and "too_many_instances" in doc["error"], doc


SPINNER = """\
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Nap extends WorkflowEntrypoint {
  async run(event, step) {
    await step.sleep("nap", "2 seconds");
    return await step.do("after", async () => "woke");
  }
}

export default {
  async fetch(request, env) {
    const batch = Array.from({ length: NAPPERS }, () => ({}));
    return new Response(String((await env.NAP.createBatch(batch)).length));
  },
};
"""

SPINNER_TOML = """
[[workflows]]
name = "nap"
binding = "NAP"
class_name = "Nap"
"""
NAPPERS = MAX_INSTANCES  # instances of a held namespace, all due (the default: 10,000)
HELD_WATCH_S = 15.0
# Invocations the engine may spend on a held namespace in the watch: a probe now and
# then, not one for each instance every few seconds.
HELD_MAX_INVOCATIONS = 20
# Once the hold is lifted, the instances run again within this: the namespace is probed
# at most HELD_PROBE_MAX_S apart (doubling from 1 s; ~16 s apart after this watch).
RESUMED_WITHIN_S = 45.0


async def _hold(walls: Walls, worker: str) -> None:
    """Three hangs blamed on `worker` of the attacker: its namespace is held (the
    watchdog's own endpoints, as the gateway's supervisor calls them)."""
    state = walls.internals["state"]
    headers = {"authorization": f"Bearer {walls.internal_token}"}
    async with httpx.AsyncClient(base_url=state, timeout=30, headers=headers) as client:
        for i in range(3):
            r = await client.post("/enter", json={"instance": f"red-{i}", "token": f"t-{i}",
                                                  "target": [ATTACKER, worker, None]})
            assert r.status_code == 200, r.text
            r = await client.post("/incident", json={"instance": f"red-{i}", "kind": "hang",
                                                     "detail": "red team"})
            assert r.status_code == 200, r.text
    deadline = time.monotonic() + 20
    while (await walls.attack(worker, "/", timeout=30)).status_code != 503:
        assert time.monotonic() < deadline, "the attacker's namespace was not held"
        await asyncio.sleep(0.5)


async def test_a_held_namespace_does_not_keep_the_engine_spinning(walls: Walls) -> None:
    await walls.attacker.deploy_js("spinner", SPINNER.replace("NAPPERS", str(NAPPERS)),
                                   SPINNER_TOML)
    r = await walls.attack("spinner", "/", timeout=120)
    assert (r.status_code, r.text) == (200, str(NAPPERS)), r.text
    await _hold(walls, "spinner")
    engine = walls.extra["platform"].workflows.engine
    await asyncio.sleep(3.0)  # every nap is over: all due, all refused by the hold
    before = engine.invocations
    await asyncio.sleep(HELD_WATCH_S)
    spent = engine.invocations - before
    assert spent <= HELD_MAX_INVOCATIONS, (
        f"{spent} invocations of a held namespace's {NAPPERS} instances in "
        f"{HELD_WATCH_S:.0f} s (10,000 instances: "
        f"{spent * 10_000 / NAPPERS / HELD_WATCH_S:.0f} a second)")
    await walls.admin.wdl("quarantine", "lift", ATTACKER)
    deadline = time.monotonic() + RESUMED_WITHIN_S
    naps = [i for i in engine.states.values() if i.namespace == ATTACKER and i.workflow == "nap"]
    while any(i.status != "complete" for i in naps):
        assert time.monotonic() < deadline, (
            f"{sum(i.status != 'complete' for i in naps)} instances not run "
            f"{RESUMED_WITHIN_S:.0f} s after the hold was lifted")
        await asyncio.sleep(0.5)
        naps = [engine.states[i.key] for i in naps]


async def test_concurrent_creates_do_not_race_past_the_bound(walls: Walls) -> None:
    await walls.attacker.deploy_js("hoarder", HOARDER, HOARDER_TOML)
    r = await walls.attack("hoarder", "/race", timeout=180)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    assert doc["made"] <= MAX_INSTANCES, (
        f"{doc['made']} live instances of {ATTACKER} made by {RACERS} concurrent creates, "
        f"its bound {MAX_INSTANCES} ({doc['error']})")
    assert doc["error"] is not None and "too_many_instances" in doc["error"], doc
