"""Fair shares, live tail: 150 tails of one namespace must not take another's `wdl tail`.

Issue 23 item 6: 99 tails opened by one namespace exhausted the control API's client
pool to the data service (httpx's default of 100 connections) and another namespace's
`wdl tail` answered `503 tail_unavailable`. The attacker here opens 150 tails over ten
of its workers with its scoped deployer token and holds them; meanwhile the victim's
operator tails `vault`, sends it a request and must see that request's event.

Closed on main before issue 23's fair-share work (71ae981: at most 32 tails per
namespace in the data service's hub, and no pool cap in the API's client): this test
holds that line at the 150 tails the issue asks for (measured: the attacker holds 32,
118 are refused with 429 `too_many_tails`, the victim sees its request in 0.05 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import pytest

from tests.security.rig import ATTACKER, VICTIM, Walls
from tests.security.test_redteam_tail import HELLO, _tail

pytestmark = pytest.mark.security

WORKERS = 10
TAILS = 150
# The victim's tail must connect and carry its request's event within this: the tail
# interest reaches the state service and the gateways reload the worker with a tail
# consumer (about a second), the gateway posts events about once a second; 10 s leaves
# room for a loaded 2-core machine and is far below "never" (before: 503 at once).
VICTIM_BOUND_S = 10.0


async def _hold(client: httpx.AsyncClient, token: str, worker: str,
                opened: list[tuple[int, str]], release: asyncio.Event) -> None:
    async with _tail(client, token, ATTACKER, worker) as r:
        body = "" if r.status_code == 200 else (await r.aread()).decode()
        opened.append((r.status_code, body))
        await release.wait()


async def _victim_sees_request(walls: Walls, client: httpx.AsyncClient,
                               token: str) -> float:
    """Seconds from opening the victim's tail to reading its request's event."""
    started = time.monotonic()
    async with _tail(client, token, VICTIM, "vault") as r:
        assert r.status_code == 200, (r.status_code, (await r.aread()).decode())
        lines = r.aiter_lines()
        first = json.loads(await anext(lines))
        assert first["type"] == "connected", first

        async def poke() -> None:
            # Requests until one shows up: the first may land before the gateway
            # reloaded `vault` with its tail consumer.
            while True:
                await walls.get(walls.host(VICTIM), "/vault/poke-tail")
                await asyncio.sleep(0.5)

        poker = asyncio.create_task(poke())
        try:
            async with asyncio.timeout(VICTIM_BOUND_S * 3):
                async for line in lines:
                    event = json.loads(line)
                    if event.get("type") == "event" and "poke-tail" in line:
                        return time.monotonic() - started
        finally:
            poker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poker
    raise AssertionError("the victim's tail ended without its request's event")


def _share(walls: Walls, name: str, namespace: str) -> float:
    registry = walls.extra["platform"].data.metrics.registry
    value = registry.get_sample_value(name, {"engine": "tails", "namespace": namespace})
    return 0.0 if value is None else float(value)


async def test_an_operator_sets_a_namespace_tail_share(walls: Walls) -> None:
    """`wdl ns limits set --tails N` bounds that namespace's tails (within seconds)."""
    await walls.attacker.deploy_js("tl-small", HELLO)
    await walls.admin.wdl("ns", "limits", "set", "--ns", ATTACKER, "--tails", "3")
    attacker = walls.attacker.env["WDL_TOKEN"]
    opened: list[tuple[int, str]] = []
    release = asyncio.Event()
    try:
        async with httpx.AsyncClient(base_url=walls.api, timeout=60) as client:
            # The data service caches a namespace's limits for up to 5 s.
            await asyncio.sleep(6)
            holders = [asyncio.create_task(_hold(client, attacker, "tl-small", opened,
                                                 release)) for _ in range(6)]
            for _ in range(300):
                if len(opened) == len(holders):
                    break
                await asyncio.sleep(0.1)
            release.set()
            await asyncio.gather(*holders, return_exceptions=True)
    finally:
        await walls.admin.wdl("ns", "limits", "set", "--ns", ATTACKER, "--tails", "0")
    assert sorted(status for status, _ in opened) == [200] * 3 + [429] * 3, opened
    await asyncio.sleep(6)  # back to the platform's default for the next test


async def test_150_tails_of_one_namespace_leave_others_their_tail(walls: Walls) -> None:
    for i in range(WORKERS):
        await walls.attacker.deploy_js(f"tl{i}", HELLO)
    attacker = walls.attacker.env["WDL_TOKEN"]
    admin = walls.admin.env["WDL_TOKEN"]
    opened: list[tuple[int, str]] = []
    release = asyncio.Event()
    limits = httpx.Limits(max_connections=TAILS + 20)
    async with httpx.AsyncClient(base_url=walls.api, timeout=60, limits=limits) as client:
        holders = [asyncio.create_task(_hold(client, attacker, f"tl{i % WORKERS}", opened,
                                             release)) for i in range(TAILS)]
        try:
            for _ in range(600):
                if len(opened) == TAILS or any(t.done() for t in holders):
                    break
                await asyncio.sleep(0.1)
            took = await _victim_sees_request(walls, client, admin)
            held = sum(1 for status, _ in opened if status == 200)
            refused = [(s, b) for s, b in opened if s != 200]
            print(f"attacker held {held} tails, refused {len(refused)}; "
                  f"victim saw its request after {took:.2f} s")
            assert took <= VICTIM_BOUND_S, f"the victim's tail took {took:.1f} s"
            # Refusals are the namespace's own cap, said clearly, never a platform 503.
            assert refused, "the attacker held all 150 tails"
            for status, body in refused:
                assert status == 429, (status, body)
                assert json.loads(body)["error"]["code"] == "too_many_tails", body
            if walls.kind == "servers":  # the data service's metrics, in-process here
                assert _share(walls, "wdl_fairshare_held", ATTACKER) == held
                assert _share(walls, "wdl_fairshare_refusals_total", ATTACKER) >= len(refused)
        finally:
            release.set()
            await asyncio.gather(*holders, return_exceptions=True)
    await walls.assert_victim_intact()

