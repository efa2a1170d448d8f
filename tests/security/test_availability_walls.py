"""Availability wall: whatever one namespace does, the others get service back within
seconds, every workerd slot comes back, and blame lands on the namespace that did it.

The storm (issue 22): the attacker deploys a *fresh version before every spin* (so no
version ever collects strikes), sends one `while (true) {}` request, then two more
0.3 s later, and does it again, four rounds. Meanwhile a healthy tenant (the victim's
worker) is asked continuously, each request on a new connection, as independent
clients would. Measured: the healthy tenant's longest stretch without an answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security

SPIN = "export default {{ async fetch() {{ /* {n} */ while (true) {{}} }} }};"
# Grows the JS heap without end: V8 aborts the process (or the watchdog kills it first).
HOG = ("export default {{ async fetch() {{ /* {n} */ const keep = [];"
       " for (;;) keep.push(new Array(1 << 20).fill(Math.random())); }} }};")
ROUNDS = 4
OUTAGE_BOUND_S = 5.0


class Healthy:
    """A client of the victim: one request at a time, a new connection each, 1 s timeout."""

    def __init__(self, walls: Walls) -> None:
        self.walls = walls
        self.answers: list[float] = []
        self.failures = 0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        limits = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=self.walls.gateway, timeout=1.0,
                                     limits=limits) as client:
            while True:
                try:
                    r = await client.get("/vault/", headers={"host": self.walls.host(VICTIM)})
                    if r.status_code == 200 and r.text == "vault":
                        self.answers.append(time.monotonic())
                    else:
                        self.failures += 1
                except httpx.HTTPError:
                    self.failures += 1
                await asyncio.sleep(0.05)

    def start(self) -> None:
        self.started = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> float:
        """The longest stretch without an answer, from start to now."""
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        points = [self.started, *self.answers, time.monotonic()]
        return max(b - a for a, b in itertools.pairwise(points))


async def _spin(walls: Walls) -> None:
    with contextlib.suppress(httpx.HTTPError):
        await walls.attack("spin", "/", timeout=15)


async def _workerd_processes(walls: Walls) -> int:
    if walls.kind == "servers":
        gateway = walls.extra["platform"].gateway
        return len([i for i in gateway.instances() if i.process.running])
    dev = walls.extra["dev"]
    return len(dev.workerd_pids())


@pytest.mark.parametrize("code", [SPIN, HOG], ids=["spin", "memory"])
async def test_a_storm_of_fresh_versions_costs_a_healthy_tenant_seconds(
        walls: Walls, code: str) -> None:
    expected = await _workerd_processes(walls)
    assert expected >= 2
    healthy = Healthy(walls)
    healthy.start()
    spins: list[asyncio.Task[None]] = []
    for n in range(ROUNDS):
        deployed = await walls.attacker.deploy(
            walls.attacker.project("spin", code.format(n=f"{code is HOG}-{n}")), ok=False)
        if deployed.code != 0:  # held back already: deploying is refused or serves nothing
            break
        spins.append(asyncio.create_task(_spin(walls)))
        await asyncio.sleep(0.3)
        spins += [asyncio.create_task(_spin(walls)) for _ in range(2)]
        await asyncio.sleep(1.0)
    # Every slot comes back: all processes running and answering within the bound.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and await _workerd_processes(walls) < expected:
        await asyncio.sleep(0.2)
    await asyncio.sleep(2.0)  # the healthy tenant keeps being served afterwards
    outage = await healthy.stop()
    for task in spins:
        task.cancel()
    await asyncio.gather(*spins, return_exceptions=True)
    print(f"storm ({walls.kind}): longest outage {outage:.2f} s, "
          f"{len(healthy.answers)} answers, {healthy.failures} failures")
    assert await _workerd_processes(walls) == expected
    assert outage <= OUTAGE_BOUND_S, f"the healthy tenant got nothing for {outage:.1f} s"

    # The storming namespace is held back (its requests refused before tenant code runs,
    # whatever version it deploys next); the healthy one carries no strike.
    held = await walls.attacker.wdl("quarantine", "list", "--json")
    assert any(q["namespace"] == ATTACKER and q.get("worker") is None for q in held.json())
    r = await walls.attack("spin", "/", timeout=5)
    assert r.status_code == 503 and r.json()["error"] == "namespace_quarantined", r.text
    strikes: list[dict[str, Any]] = (await walls.admin.wdl(
        "quarantine", "strikes", "--json")).json()
    by_ns = {s["namespace"]: s for s in strikes}
    assert by_ns.get(VICTIM, {"strikes": 0})["strikes"] == 0, strikes
    assert by_ns[ATTACKER]["strikes"] >= 1
    await walls.assert_victim_intact()
    # The next storm starts from nothing held (one platform per module).
    await walls.admin.wdl("quarantine", "lift", ATTACKER, "--note", "next storm")
