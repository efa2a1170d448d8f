"""Red team, workflows: one namespace must not hold the workflow engine for everyone.

The engine runs at most 64 invocations at a time, for every namespace together, and
an invocation may take 11 minutes (a step's own timeout is the tenant's). A namespace
that created 70 instances whose first step waits on slow I/O held all 64 slots: every
other namespace's workflows waited until those steps ended (here 40 s; 11 minutes a
round if the attacker likes, again and again). A held (quarantined) namespace's
instances kept their slots too, retrying.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.security.rig import VICTIM, Actor, Walls

pytestmark = pytest.mark.security

WALLS_COMPONENTS = ("workflows",)

SLOW_S = 40
HOGS = 70
BOUND_S = 15.0

HOG = """\
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Hog extends WorkflowEntrypoint {
  async run(event, step) {
    await step.do("slow", async () => {
      await new Promise((resolve) => setTimeout(resolve, {slow_ms}));
      return 1;
    });
  }
}

export default {
  async fetch(request, env) {
    const list = [];
    for (let i = 0; i < {hogs}; i++) list.push({ params: { i } });
    const made = await env.HOG.createBatch(list);
    return new Response(String(made.length));
  },
};
""".replace("{slow_ms}", str(SLOW_S * 1000)).replace("{hogs}", str(HOGS))

HOG_TOML = """
[[workflows]]
name = "hog"
binding = "HOG"
class_name = "Hog"
"""

QUICK = """\
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Quick extends WorkflowEntrypoint {
  async run(event, step) {
    return await step.do("one", async () => "done");
  }
}

export default {
  async fetch(request, env) {
    return new Response((await env.QUICK.create()).id);
  },
};
"""

QUICK_TOML = """
[[workflows]]
name = "quick"
binding = "QUICK"
class_name = "Quick"
"""


async def test_one_namespace_cannot_hold_every_workflow_slot(walls: Walls) -> None:
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    await victim.deploy(victim.project("quick", QUICK, QUICK_TOML))
    await walls.attacker.deploy_js("hog", HOG, HOG_TOML)
    r = await walls.attack("hog", "/", timeout=60)
    assert (r.status_code, r.text) == (200, str(HOGS)), r.text
    await asyncio.sleep(3.0)  # the engine picks the hogs up
    r = await walls.get(walls.host(VICTIM), "/quick/", timeout=30)
    assert r.status_code == 200, r.text
    instance = r.text
    started = time.monotonic()
    status = None
    while time.monotonic() - started < BOUND_S:
        status = (await walls.admin.wdl("workflows", "status", "quick", instance, "--ns",
                                        VICTIM, "--json")).json()
        if status["status"] == "complete":
            break
        await asyncio.sleep(0.5)
    assert status is not None and status["status"] == "complete", (
        f"the victim's workflow waited {BOUND_S:.0f} s behind the attacker's: {status}")
    await walls.assert_victim_intact()
