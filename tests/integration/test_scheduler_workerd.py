"""Two scheduler replicas on the real servers dispatch into real workerd; one is SIGKILLed.

The cron worker reports every run to a sink the test owns: its scheduled()
handler records `controller.scheduledTime` and the test reads the records
through the gateway (one gateway, one isolate per version, never recycled
here). The replicas share an accelerated clock: one virtual minute lasts 2
real seconds, so a `* * * * *` trigger has a slot every 2 s.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from eventlog.factory import open_event_log
from harness.endpoints import ROOT, Endpoints
from projections.audit_store import AuditStore
from projections.rebuild import rebuild
from projections.redis_store import RedisProjectionStore
from tests.platform_stack import Stack, platform_stack

MINUTE = 60_000
FACTOR = 30  # virtual ms per real ms
TTL_MS = 4 * MINUTE // 2  # 2 virtual minutes = 4 real seconds
TOKEN = "wdl-internal-scheduler-test"

CRON_WORKER = """
const runs = [];
export default {
  async scheduled(controller, env, ctx) {
    runs.push({ t: controller.scheduledTime, type: typeof controller.scheduledTime,
                cron: controller.cron });
  },
  async fetch(request) {
    return Response.json(runs);
  },
};
"""


async def runs_seen(stack: Stack) -> list[int]:
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.get(stack.gateway + "/ticker/", headers={"host": "acme.workers.local"})
    assert r.status_code == 200, r.text
    runs = r.json()
    # Like Cloudflare's: scheduledTime is a number of milliseconds.
    assert all(run["type"] == "number" for run in runs), runs
    return [int(run["t"]) for run in runs if run["cron"] == "* * * * *"]


async def wait_runs(stack: Stack, count: int, timeout: float = 60) -> list[int]:
    async with asyncio.timeout(timeout):
        while True:
            seen = await runs_seen(stack)
            if len(seen) >= count:
                return seen
            await asyncio.sleep(0.2)


async def start_replica(stack: Stack, name: str, clock: str) -> asyncio.subprocess.Process:
    env = {**stack.backend_env, "WDL_SCHEDULER_ID": name, "WDL_SCHEDULER_CLOCK": clock,
           "WDL_SCHEDULER_TTL_MS": str(TTL_MS), "WDL_SCHEDULER_TICK_MS": "3000",
           "WDL_SCHEDULER_CATCHUP_MS": str(3 * TTL_MS), "WDL_GATEWAY_URL": stack.gateway,
           "WDL_INTERNAL_TOKEN": TOKEN}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.scheduler", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)


async def test_slots_fire_once_across_replicas_and_survive_a_sigkill(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              internal_token=TOKEN) as stack:
        await stack.wdl("ns", "create", "acme")
        project = stack.project("ticker", CRON_WORKER)
        toml = project / "wrangler.toml"
        toml.write_text(toml.read_text() + '\n[triggers]\ncrons = ["* * * * *"]\n')
        await stack.deploy("acme", project)
        assert await runs_seen(stack) == []
        # The public gateway refuses the internal endpoint without the token.
        async with httpx.AsyncClient() as client:
            r = await client.post(stack.gateway + "/__wdl/scheduled", json={},
                                  headers={"host": "acme.workers.local"})
        assert r.status_code == 401

        now = time.time_ns() // 1_000_000
        clock = f"{now}:{now - now % MINUTE}:{FACTOR}"
        replicas = {name: await start_replica(stack, name, clock) for name in ("sa", "sb")}
        killed = ""
        try:
            before = await wait_runs(stack, 4)
            async with RedisProjectionStore(services.redis_url or "",
                                            prefix=stack.backend_env["WDL_REDIS_PREFIX"]) as store:
                lease = json.loads(await store.hget("leases", "scheduler") or "{}")
                killed, generation = lease["holder"], lease["generation"]
                replicas[killed].send_signal(signal.SIGKILL)
                await replicas[killed].wait()
                after = await wait_runs(stack, len(before) + 4, timeout=90)
                lease = json.loads(await store.hget("leases", "scheduler") or "{}")
                runs = {k: json.loads(v) for k, v in
                        (await store.hgetall("cron_runs:acme/ticker")).items()}
        finally:
            for proc in replicas.values():
                if proc.returncode is None:
                    proc.send_signal(signal.SIGTERM)
                    await asyncio.wait_for(proc.wait(), 30)
        survivor = next(n for n in replicas if n != killed)
        assert lease["holder"] == survivor and lease["generation"] > generation

        fired = Counter(after)
        assert all(n == 1 for n in fired.values()), f"a slot fired twice: {fired}"
        assert all(t % MINUTE == 0 for t in after)
        # Every minute between the first and last run fired, except slots the
        # killed replica had claimed but not dispatched (at most once: lost).
        expected = set(range(min(after), max(after) + 1, MINUTE))
        lost = {int(k.split("|")[0]) for k, v in runs.items() if v["status"] == "claimed"
                and v["holder"] == killed}
        assert expected - set(after) <= lost and len(lost) <= 1
        # Slots after the kill resumed within the lease bound plus one tick.
        gap = min(t for t in after if t > max(before)) - max(before)
        assert gap <= TTL_MS + 2 * MINUTE

        # A rebuild of the projections reproduces the same lease holders and generations.
        settings_env = stack.backend_env
        async with open_event_log(f"kafka://{services.kafka_bootstrap_servers}?topic="
                                  f"{settings_env['WDL_TOPIC']}&partitions=4") as log, \
                RedisProjectionStore(services.redis_url or "",
                                     prefix=settings_env["WDL_REDIS_PREFIX"]) as store, \
                AuditStore(fresh_database) as audit:
            live = await store.hgetall("leases")  # the survivor released it on SIGTERM
            report = await rebuild(log, store, audit, switch=False)
            rebuilt = await store.hgetall("leases", generation=report.generation)
        assert live["scheduler"] and json.loads(live["scheduler"])["generation"] >= generation + 1
        assert rebuilt == live  # same holders, generations, expiries
