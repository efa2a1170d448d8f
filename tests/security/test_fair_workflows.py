"""Noisy neighbours, workflow engine: one namespace's workflows must neither spin the
engine, nor grow what it stores without bound, nor hold its slots, while another
namespace's workflow completes within a few seconds (docs/security.md, "Fair shares").

Found on the engine before the fix (issue 23):
- a step returning an array nested 3,000 deep made decoding the gateway's answer raise
  RecursionError, which escaped the run loop: the instance ran again at once, hundreds
  of invocations a second, a traceback each, until `terminate`;
- a step error of 3 MB was stored and replayed on every invocation (values are capped
  at 1 MiB, errors were not);
- a namespace could create instances without any bound (createBatch makes 100 a call),
  every one held in the engine's memory with its timers.
Real servers (Kafka, Redis, PostgreSQL, workerd), the attacker driven with a deployer
token scoped to its namespace.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from harness.endpoints import Endpoints
from tests.security.conftest import SERVER_COMPONENTS, _servers
from tests.security.rig import ATTACKER, VICTIM, Actor, Walls
from tests.security.test_redteam_workflows import QUICK, QUICK_TOML

pytestmark = pytest.mark.security

# A low bound of unfinished instances, so the test reaches it in seconds (default 10,000).
MAX_INSTANCES = 150
WALLS_ENV = {"WDL_WORKFLOWS_MAX_INSTANCES": str(MAX_INSTANCES)}

# The victim's one-step workflow completes in ~0.1 s on an idle engine; 5 s leaves room
# for a loaded 2-core machine, and is far below what each attack cost it before.
VICTIM_BOUND_S = 5.0
# The deep step retries twice, 1 s apart: with the engine's own backoff between a failed
# invocation and its charge to the step, about 7 invocations in ~10 s. Before: hundreds.
DEEP_MAX_INVOCATIONS = 12
DEEP_WINDOW_S = 8.0
DEEP_ERRORED_WITHIN_S = 40.0
# docs/workflows.md, "Limits": error messages are clipped to 8,192 characters.
MAX_ERROR_MESSAGE = 8192
SLOW_MS = 20_000  # each slow step; beyond the test's horizon, so they hold their slots

NOISY = """\
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Deep extends WorkflowEntrypoint {
  async run(event, step) {
    return await step.do("deep", { retries: { limit: 2, delay: "1 second",
                                              backoff: "constant" } }, async () => {
      let v = [];
      for (let i = 0; i < 3000; i++) v = [v];
      return v;
    });
  }
}

export class Loud extends WorkflowEntrypoint {
  async run(event, step) {
    await step.do("loud", { retries: { limit: 0 } }, async () => {
      throw new Error("x".repeat(3 * 1024 * 1024));
    });
  }
}

export class Slow extends WorkflowEntrypoint {
  async run(event, step) {
    await step.do("slow", async () => {
      await new Promise((resolve) => setTimeout(resolve, SLOW_MS));
      return 1;
    });
  }
}

export default {
  async fetch(request, env) {
    const path = new URL(request.url).pathname;
    if (path === "/deep") return new Response((await env.DEEP.create()).id);
    if (path === "/loud") return new Response((await env.LOUD.create()).id);
    if (path === "/slow") {
      let made = 0;
      let error = null;
      try {
        for (let round = 0; round < 4; round++) {
          const batch = [];
          for (let i = 0; i < 100; i++) batch.push({ params: { i } });
          made += (await env.SLOW.createBatch(batch)).length;
        }
      } catch (err) {
        error = String(err && err.message || err);
      }
      return Response.json({ made, error });
    }
    return new Response("noisy");
  },
};
""".replace("SLOW_MS", str(SLOW_MS))

NOISY_TOML = """
[[workflows]]
name = "deep"
binding = "DEEP"
class_name = "Deep"

[[workflows]]
name = "loud"
binding = "LOUD"
class_name = "Loud"

[[workflows]]
name = "slow"
binding = "SLOW"
class_name = "Slow"
"""



@pytest.fixture(scope="module")
async def walls(services: Endpoints, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Walls]:
    """The real servers only, with the workflows engine in-process (its counters read)."""
    tmp = tmp_path_factory.mktemp("walls-fair-workflows")
    components = SERVER_COMPONENTS | frozenset({"workflows"})
    async for walls in _servers(services, tmp, dict(WALLS_ENV), components):
        victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
        await victim.deploy(victim.project("quick", QUICK, QUICK_TOML))
        await walls.attacker.deploy_js("noisy", NOISY, NOISY_TOML)
        yield walls


def engine_of(walls: Walls) -> Any:
    return walls.extra["platform"].workflows.engine


async def status(actor: Actor, namespace: str, workflow: str, instance: str) -> dict[str, Any]:
    result = await actor.wdl("workflows", "status", workflow, instance, "--ns", namespace,
                             "--json")
    doc: dict[str, Any] = result.json()
    return doc


async def victim_workflow_seconds(walls: Walls) -> float:
    """Create the victim's one-step workflow and time it to `complete` (capped)."""
    r = await walls.get(walls.host(VICTIM), "/quick/", timeout=30)
    assert r.status_code == 200, r.text
    started = time.monotonic()
    while time.monotonic() - started < VICTIM_BOUND_S * 4:
        if (await status(walls.admin, VICTIM, "quick", r.text))["status"] == "complete":
            break
        await asyncio.sleep(0.2)
    return time.monotonic() - started


async def until_finished(actor: Actor, workflow: str, instance: str,
                         within_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    doc = await status(actor, ATTACKER, workflow, instance)
    while doc["status"] not in ("complete", "errored", "terminated"):
        assert time.monotonic() < deadline, f"{workflow} still {doc['status']}"
        await asyncio.sleep(0.5)
        doc = await status(actor, ATTACKER, workflow, instance)
    return doc


async def test_a_deep_step_result_backs_off_and_errors(walls: Walls) -> None:
    engine = engine_of(walls)
    before = engine.invocations
    r = await walls.attack("noisy", "/deep")
    assert r.status_code == 200, r.text
    instance = r.text
    try:
        await asyncio.sleep(3.0)
        took = await victim_workflow_seconds(walls)
        await asyncio.sleep(max(0.0, DEEP_WINDOW_S - 3.0 - took))
        spent = engine.invocations - before - 2  # the victim's: one step, one completion
        print(f"deep: {spent} invocations in {DEEP_WINDOW_S:.0f} s; "
              f"victim's workflow {took:.2f} s")
        assert spent <= DEEP_MAX_INVOCATIONS, f"{spent} invocations of one instance"
        assert took < VICTIM_BOUND_S, f"the victim's workflow took {took:.1f} s"
        doc = await until_finished(walls.attacker, "deep", instance, DEEP_ERRORED_WITHIN_S)
    finally:
        await walls.attacker.wdl("workflows", "terminate", "deep", instance, "--ns", ATTACKER,
                                 ok=False)
    assert doc["status"] == "errored", doc
    assert "nested deeper than 64 levels" in doc["error"]["message"], doc
    assert engine.invocations - before - 2 <= DEEP_MAX_INVOCATIONS


async def test_a_huge_step_error_is_clipped(walls: Walls) -> None:
    r = await walls.attack("noisy", "/loud")
    assert r.status_code == 200, r.text
    doc = await until_finished(walls.attacker, "loud", r.text, 30.0)
    size = len(doc["error"]["message"])
    print(f"loud: stored error message of {size} characters")
    assert doc["status"] == "errored", doc
    assert size <= MAX_ERROR_MESSAGE, f"an error of {size} characters was stored"
    took = await victim_workflow_seconds(walls)
    assert took < VICTIM_BOUND_S, f"the victim's workflow took {took:.1f} s"


async def test_slow_steps_beyond_the_slots_and_the_instance_bound(walls: Walls) -> None:
    r = await walls.attack("noisy", "/slow", timeout=60)
    assert r.status_code == 200, r.text
    made = r.json()
    print(f"slow: the attacker created {made['made']} instances ({made['error']})")
    await asyncio.sleep(2.0)  # the engine picks them up: every slot it gives them, held
    took = await victim_workflow_seconds(walls)
    print(f"slow: victim's workflow {took:.2f} s")
    assert made["made"] <= MAX_INSTANCES, made
    assert made["error"] is not None and "too_many_instances" in made["error"], made
    assert took < VICTIM_BOUND_S, f"the victim's workflow took {took:.1f} s"
    await walls.assert_victim_intact()

