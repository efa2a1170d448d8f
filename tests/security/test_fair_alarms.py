"""Noisy neighbour, Durable Object alarms: an alarm that spins must strike its namespace,
and a namespace held back must not keep hanging every namespace's objects.

An alarm is asynchronous work: no request of the tenant is in flight when it fires,
the DO host fires it by itself, and (its files being persistent) fires it again after
the host is replaced. A `while (true) {}` in `alarm()` therefore hung the host, was
replaced, and hung it again as soon as the alarm came due, for as long as the
platform ran - the gateway's hold on the namespace never reached the DO host.

Now an alarm is entered like any other call into tenant code (announced in careful
mode, so its hang names its namespace), and the host runs nothing of a held
namespace: the alarm of a held namespace fails (workerd retries it later with
backoff), so after the strikes that hold the attacker the victim's objects answer
without interruption. A module of its own: the host hangs on purpose.
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

ALARM_SPINNER = """\
import { DurableObject } from "cloudflare:workers";

export class Ticker extends DurableObject {
  async arm() {
    await this.ctx.storage.setAlarm(Date.now() + 200);
    return "armed";
  }
  async alarm() {
    // Re-armed first, so the alarm is due again whatever happens to this run.
    await this.ctx.storage.setAlarm(Date.now() + 200);
    while (true) {}
  }
}

export default {
  async fetch(request, env) {
    return new Response(await env.TICKER.getByName("a").arm());
  },
};
"""

TOML = """
[[durable_objects.bindings]]
name = "TICKER"
class_name = "Ticker"

[[migrations]]
tag = "v1"
new_sqlite_classes = ["Ticker"]
"""

# Strikes hold a namespace after 3 in 10 minutes; each hang costs one watchdog cycle
# (a few seconds), and the first, before careful mode, names nobody: 4 hangs, ~30 s.
HELD_WITHIN_S = 90.0
# Once held, the victim's object must answer every poll for this long.
QUIET_WINDOW_S = 20.0
POLL_TIMEOUT_S = 3.0


async def _victim_answers(walls: Walls) -> bool:
    with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
        r = await walls.get(walls.host(VICTIM), "/vault/state", timeout=POLL_TIMEOUT_S)
        return r.status_code == 200 and r.json()["do"]["kv"] == "victim-do-value"
    return False


async def _strikes(walls: Walls) -> dict[str, Any]:
    rows = (await walls.admin.wdl("quarantine", "strikes", "--json")).json()
    return {r["namespace"]: r for r in rows}


async def test_a_spinning_alarm_strikes_its_namespace_and_stops_once_held(
        walls: Walls) -> None:
    await walls.attacker.deploy_js("ticker", ALARM_SPINNER, TOML)
    armed = await walls.attack("ticker", "/", timeout=10)
    assert armed.status_code == 200 and armed.text == "armed", armed.text

    started = time.monotonic()
    outages = 0
    down_s = 0.0
    held_at: float | None = None
    while held_at is None:
        elapsed = time.monotonic() - started
        assert elapsed < HELD_WITHIN_S, (
            f"the attacker was not held within {HELD_WITHIN_S:.0f} s of a spinning alarm: "
            f"{outages} outages of the victim's object ({down_s:.1f} s down), strikes "
            f"{await _strikes(walls)}")
        t0 = time.monotonic()
        if not await _victim_answers(walls):
            outages += 1
            down_s += time.monotonic() - t0
        strikes = await _strikes(walls)
        if strikes.get(ATTACKER, {}).get("held"):
            held_at = time.monotonic() - started
        await asyncio.sleep(0.25)
    strikes = await _strikes(walls)
    assert VICTIM not in strikes, strikes
    assert strikes[ATTACKER]["last"]["worker"] == "ticker"

    # Held: the alarm keeps coming due, and must hang nobody any more.
    quiet_from = time.monotonic()
    failures = 0
    while time.monotonic() - quiet_from < QUIET_WINDOW_S:
        if not await _victim_answers(walls):
            failures += 1
        await asyncio.sleep(0.25)
    print(f"DO alarm spin ({walls.kind}): attacker held after {held_at:.1f} s, "
          f"{outages} polls failed before ({down_s:.1f} s), {failures} in the "
          f"{QUIET_WINDOW_S:.0f} s after")
    assert failures == 0, f"{failures} polls of the victim's object failed after the hold"
    await walls.assert_victim_intact()
