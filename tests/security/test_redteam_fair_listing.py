"""Red team, fair shares, workflow engine: listing a namespace's instances must not make
the engine and the control API hold all of them at once.

The instance list answered every instance of the workflow with its params and output
(up to 1 MiB each), encoded in one piece by the engine and decoded and encoded again by
the control API, for each listing a tenant asks for at once - and it grew without
bound with the finished instances (kept for good). Cloudflare's list of instances
carries ids, statuses and times, not params or outputs; so does WDL's now, at most
1,000 a page. Measured on main: 150 instances of 0.9 MB params, 4 listings at once
answered 135 MB each (540 MB in flight through both processes) in 7.5 s; the victim's
workflow still completed (0.8 s) - the bound here is the memory, not the latency.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.security.conftest import SERVER_COMPONENTS, _servers
from tests.security.rig import ATTACKER, VICTIM, Actor, Walls
from tests.security.test_fair_workflows import victim_workflow_seconds
from tests.security.test_redteam_workflows import QUICK, QUICK_TOML

pytestmark = pytest.mark.security

INSTANCES = 150
PARAMS_CHARS = 900_000
LISTINGS = 4
# The victim's one-step workflow completes in ~0.6 s here; 5 s leaves room for a loaded
# 2-core machine (test_fair_workflows.py uses the same bound).
VICTIM_BOUND_S = 5.0

BIG = """\
import { WorkflowEntrypoint } from "cloudflare:workers";

export class Big extends WorkflowEntrypoint {
  async run(event, step) {
    return await step.waitForEvent("never", { type: "never", timeout: "1 hour" });
  }
}

export default {
  async fetch(request, env) {
    const params = { blob: "p".repeat(PARAMS_CHARS) };
    let made = 0;
    for (; made < INSTANCES; made++) await env.BIG.create({ params });
    return new Response(String(made));
  },
};
""".replace("PARAMS_CHARS", str(PARAMS_CHARS)).replace("INSTANCES", str(INSTANCES))

BIG_TOML = """
[[workflows]]
name = "big"
binding = "BIG"
class_name = "Big"
"""


@pytest.fixture(scope="module")
async def walls(services: Endpoints, tmp_path_factory: pytest.TempPathFactory
                ) -> AsyncIterator[Walls]:
    tmp = tmp_path_factory.mktemp("walls-redteam-listing")
    components = SERVER_COMPONENTS | frozenset({"workflows"})
    async for walls in _servers(services, tmp, {}, components):
        victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
        await victim.deploy(victim.project("quick", QUICK, QUICK_TOML))
        yield walls


async def test_listing_instances_does_not_hold_the_engine(walls: Walls) -> None:
    await walls.attacker.deploy_js("big", BIG, BIG_TOML)
    r = await walls.attack("big", "/", timeout=300)
    assert (r.status_code, r.text) == (200, str(INSTANCES)), r.text
    idle = await victim_workflow_seconds(walls)
    path = f"/v1/namespaces/{ATTACKER}/workflows/big/instances"
    async with httpx.AsyncClient(base_url=walls.api, timeout=120, headers={
            "authorization": f"Bearer {walls.attacker.env['WDL_TOKEN']}"}) as api:
        started = time.monotonic()
        listings = asyncio.gather(*(api.get(path) for _ in range(LISTINGS)))
        await asyncio.sleep(0.2)
        took = await victim_workflow_seconds(walls)
        answers = await listings
        listed_s = time.monotonic() - started
    sizes = [len(a.content) for a in answers]
    print(f"victim idle {idle:.2f} s, during the listings {took:.2f} s; listings "
          f"{listed_s:.1f} s, {[a.status_code for a in answers]}, {sizes} bytes")
    assert took < VICTIM_BOUND_S, (
        f"the victim's workflow took {took:.1f} s while {LISTINGS} listings of "
        f"{INSTANCES} instances ran (idle: {idle:.1f} s)")
    for a in answers:
        assert a.status_code == 200, a.text[:300]
        assert len(a.content) < 1_000_000, f"a listing of {len(a.content)} bytes"
