"""Red team, availability: blame must land on the namespace whose code hung a process,
whichever way the platform entered that code.

A request through the gateway is *marked* in the barrier round it waits for, so a
process that hangs has its culprit in its last round (docs/containment.md). A cron
run is *announced*. But a **queue batch** and a **workflow step** were neither: the
gateway ran the tenant's `queue()` / the workflow's step without a mark or an
announcement, so the state service found no suspect (or only whoever else was in the
round) and struck nobody. One message to a consumer that spins hung a gateway process
every ~3 s for as long as the attacker liked (the queue service takes a dropped
connection for "not run" and delivers again) - 44 process kills in 50 s in a manual
run, nobody blamed, nobody held back.
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

WALLS_COMPONENTS = ("queues", "workflows")

QUEUE_SPIN = """\
export default {
  async fetch(request, env) {
    await env.JOBS.send({ n: 1 });
    return new Response("sent");
  },
  async queue(batch) { /* SPIN */ }
};
"""
QUEUE_TOML = """
[[queues.producers]]
binding = "JOBS"
queue = "jobs"

[[queues.consumers]]
queue = "jobs"
max_batch_size = 1
max_batch_timeout = 0
max_retries = 1
"""

WORKFLOW_SPIN = """\
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Spin extends WorkflowEntrypoint {
  async run(event, step) {
    await step.do("spin", async () => { /* SPIN */ return 1; });
  }
}

export default {
  async fetch(request, env) {
    const instance = await env.FLOW.create();
    return new Response(instance.id);
  },
};
"""
WORKFLOW_TOML = """
[[workflows]]
name = "spinflow"
binding = "FLOW"
class_name = "Spin"
"""

CASES = {"queue": ("qspin", QUEUE_SPIN, QUEUE_TOML),
         "workflow": ("wfspin", WORKFLOW_SPIN, WORKFLOW_TOML)}


async def _strikes(walls: Walls) -> dict[str, Any]:
    strikes = (await walls.admin.wdl("quarantine", "strikes", "--json")).json()
    return {s["namespace"]: s for s in strikes}


async def _victim_answers(walls: Walls, bound_s: float) -> None:
    started = time.monotonic()
    while time.monotonic() - started < bound_s:
        with contextlib.suppress(httpx.HTTPError):
            r = await walls.get(walls.host(VICTIM), "/vault/", timeout=2)
            if r.status_code == 200:
                return
        await asyncio.sleep(0.3)
    raise AssertionError(f"the victim got no answer for {bound_s:.0f} s")


@pytest.mark.parametrize("case", sorted(CASES))
async def test_code_entered_from_a_queue_or_a_workflow_is_blamed(walls: Walls,
                                                                  case: str) -> None:
    worker, js, toml = CASES[case]
    await walls.admin.wdl("quarantine", "lift", ATTACKER, "--note", "red team", ok=False)
    await walls.attacker.deploy_js(worker, js.replace("/* SPIN */", "while (true) {}"), toml)
    before = (await _strikes(walls)).get(ATTACKER, {}).get("strikes", 0)
    started = ""
    try:
        r = await walls.attack(worker, "/", timeout=30)
        assert r.status_code == 200, r.text
        started = r.text
        deadline = time.monotonic() + 45
        struck = 0
        while time.monotonic() < deadline:
            struck = (await _strikes(walls)).get(ATTACKER, {}).get("strikes", 0)
            if struck > before:
                break
            await asyncio.sleep(1)
        strikes = await _strikes(walls)
        assert struck > before, f"a spinning {case} hung processes and nobody was struck: " \
                                f"{strikes}"
        assert strikes.get(VICTIM, {"strikes": 0})["strikes"] == 0, strikes
    finally:
        # Stop the storm whatever happened: a version that does not spin, the instance
        # (pinned to the spinning version) ended, no hold.
        if case == "workflow" and started:
            await walls.attacker.wdl("workflows", "terminate", "spinflow", started,
                                     "--ns", ATTACKER, ok=False)
        await walls.attacker.deploy_js(worker, js.replace("/* SPIN */", ""), toml)
        await walls.admin.wdl("quarantine", "lift", ATTACKER, "--note", "red team", ok=False)
    await _victim_answers(walls, 30)
    await walls.assert_victim_intact()
