"""Red team, live tail: one namespace must not take every other namespace's `wdl tail`.

The data service holds at most 128 tail subscribers, 16 per worker, and had no limit
per namespace: a namespace with 8 workers opened 128 tails of its own (its deployer
token may tail its workers) and every other tenant's `wdl tail` answered
`429 too_many_tails` for as long as it kept them open.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls

pytestmark = pytest.mark.security

HELLO = "export default { fetch() { return new Response('hi'); } };"
WORKERS = 8
PER_WORKER = 16


@contextlib.asynccontextmanager
async def _tail(client: httpx.AsyncClient, token: str, ns: str,
                worker: str) -> AsyncIterator[httpx.Response]:
    async with client.stream("GET", f"/v1/namespaces/{ns}/workers/{worker}/tail",
                             headers={"authorization": f"Bearer {token}"}) as r:
        yield r


async def _hold(client: httpx.AsyncClient, token: str, worker: str,
                opened: list[int], release: asyncio.Event) -> None:
    async with _tail(client, token, ATTACKER, worker) as r:
        opened.append(r.status_code)
        await release.wait()


async def test_one_namespace_cannot_take_every_tail(walls: Walls) -> None:
    for i in range(WORKERS):
        await walls.attacker.deploy_js(f"t{i}", HELLO)
    attacker = walls.attacker.env["WDL_TOKEN"]
    admin = walls.admin.env["WDL_TOKEN"]
    limits = httpx.Limits(max_connections=WORKERS * PER_WORKER + 10)
    opened: list[int] = []
    release = asyncio.Event()
    async with httpx.AsyncClient(base_url=walls.api, timeout=30, limits=limits) as client:
        holders = [asyncio.create_task(_hold(client, attacker, f"t{i}", opened, release))
                   for i in range(WORKERS) for _ in range(PER_WORKER)]
        try:
            for _ in range(200):
                if len(opened) == len(holders) or any(t.done() for t in holders):
                    break
                await asyncio.sleep(0.1)
            # The victim's operator tails its own worker meanwhile.
            async with _tail(client, admin, VICTIM, "vault") as r:
                assert r.status_code == 200, (await r.aread()).decode()
            refused = [s for s in opened if s != 200]
            assert refused, "the attacker held every tail it asked for"
            assert all(s == 429 for s in refused), opened
        finally:
            release.set()
            await asyncio.gather(*holders, return_exceptions=True)
    await walls.assert_victim_intact()
