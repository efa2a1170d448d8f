"""FAULT: SIGKILL the workflows engine while 100 instances run (real Kafka, real workerd).

The engine runs as its own process (`python -m services.workflows`, as `wdl up
--only workflows` deploys it). A first batch of 100 instances runs
uninterrupted; a second batch with the same params is started, the engine is
killed with SIGKILL mid-way and a new engine process takes the lease over
when the old lease expires. Then:

* every instance of both batches completes;
* no completed step ran again: each step's recorded result is the one its
  *last* execution produced (an execution after the recorded one would be a
  re-run of a completed step); a step cut short by the kill may have run
  twice before its result was recorded, and those are counted;
* outputs equal the uninterrupted batch's, instance for instance;
* folding the topic alone (a rebuild) reproduces every instance's status.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from services.workflows.model import fold_all
from services.workflows.store import KafkaWorkflowSettings, KafkaWorkflowStore
from tests.platform_stack import platform_stack
from tests.workflows.rig import PROJECT, TOKEN, EngineApi, Sink, Tenant

N = 100
STEPS = ("one", "two", "par-1", "par-2", "par-3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_engine(env: dict[str, str], name: str, log: Path) -> asyncio.subprocess.Process:
    out = log.open("ab")
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "services.workflows", cwd=ROOT,
        env={**env, "WDL_WORKFLOWS_ID": name}, stdout=out, stderr=out)


async def until_leading(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=3) as client:
        while time.monotonic() < deadline:
            try:
                r = await client.get(url + "/healthz", headers={"x-wdl-internal-token": TOKEN})
                if r.status_code == 200 and r.json()["leading"]:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise AssertionError(f"no engine leads at {url} within {timeout}s")


async def until_done(engine: EngineApi, ns: str, ids: list[str],
                     timeout: float = 60) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            rows = await engine.instances(ns)
        except httpx.HTTPError:
            rows = {}
        if rows and all(rows.get(i, {}).get("status") in ("complete", "errored") for i in ids):
            # Listings carry no outputs: each instance whole.
            return {i: await engine.instance(ns, rows[i]["workflow"], i) for i in ids}
        if time.monotonic() > deadline:
            left = {i: rows.get(i, {}).get("status") for i in ids
                    if rows.get(i, {}).get("status") != "complete"}
            raise AssertionError(f"not finished within {timeout}s: {list(left.items())[:5]}")
        await asyncio.sleep(0.25)


async def test_sigkill_engine_during_100_instances(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sink = Sink()
    await sink.start()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    procs: list[asyncio.subprocess.Process] = []
    try:
        async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                                  egress_allow_loopback=True, workflows_url=url) as stack:
            env = {**stack.backend_env, "WDL_GATEWAY_URL": stack.gateway,
                   "WDL_INTERNAL_TOKEN": TOKEN, "WDL_WORKFLOWS_PORT": str(port),
                   "WDL_WORKFLOWS_TTL_MS": "2000", "PYTHONPATH": str(ROOT)}
            log = tmp_path / "engine.log"
            procs.append(await start_engine(env, "engine-a", log))
            ns = unique_name("wff")[:30].lower().replace("_", "-")
            await stack.wdl("ns", "create", ns)
            await stack.deploy(ns, PROJECT)
            await until_leading(url)
            tenant, engine = Tenant(stack.gateway, ns), EngineApi(url)
            try:
                def params(n: int) -> dict[str, Any]:
                    return {"n": n, "sink": sink.url, "flaky": n % 3 == 0,
                            "sleep": "1 second"}

                calm = await tenant.batch([{"id": f"calm-{n}", "params": params(n)}
                                           for n in range(N)])
                calm_rows = await until_done(engine, ns, calm)

                storm = await tenant.batch([{"id": f"storm-{n}", "params": params(n)}
                                            for n in range(N)])
                # Kill while the batch is mid-way: some steps recorded, many to go.
                deadline = time.monotonic() + 30
                while sum(1 for i, _, _ in sink.hits if i.startswith("storm-")) < N * 2:
                    assert time.monotonic() < deadline, "the storm batch made no progress"
                    await asyncio.sleep(0.02)
                procs[0].send_signal(signal.SIGKILL)
                await procs[0].wait()
                killed_at = sum(1 for i, _, _ in sink.hits if i.startswith("storm-"))
                procs.append(await start_engine(env, "engine-b", log))
                await until_leading(url)
                storm_rows = await until_done(engine, ns, storm, timeout=60)
            finally:
                await tenant.close()
                await engine.close()

            assert killed_at < N * len(STEPS) + N // 3  # it really was killed mid-way
            for rows in (calm_rows, storm_rows):
                bad = {k: v["error"] for k, v in rows.items() if v["status"] != "complete"}
                assert not bad
            # Outputs equal the uninterrupted run's, instance for instance.
            for n in range(N):
                a, b = calm_rows[f"calm-{n}"]["output"], storm_rows[f"storm-{n}"]["output"]
                assert (a["sum"], a["got"]) == (b["sum"], b["got"])
            # No completed step ran again, and every step ran.
            counts = sink.counts()
            reruns = 0
            for rows in (calm_rows, storm_rows):
                for iid, row in rows.items():
                    recorded = row["output"]["execs"]
                    for step, exec_id in zip(STEPS, recorded, strict=True):
                        assert sink.last_exec(iid, step) == exec_id, (iid, step)
                        expected = 2 if step == "two" and int(iid.split("-")[1]) % 3 == 0 else 1
                        assert counts[(iid, step)] >= expected
                        reruns += counts[(iid, step)] - expected
            # The uninterrupted batch ran each step exactly as often as the workflow says.
            assert all(counts[(i, s)] == (2 if s == "two" and int(i.split("-")[1]) % 3 == 0
                                          else 1) for i in calm for s in STEPS)
            print(f"steps cut short by the kill and run again: {reruns}")

            # A rebuild from the topic alone reproduces every status.
            store = KafkaWorkflowStore(KafkaWorkflowSettings(
                stack.backend_env["KAFKA_BOOTSTRAP_SERVERS"],
                topic=stack.backend_env["WDL_TOPIC"] + ".workflows"))
            await store.start()
            try:
                rebuilt = fold_all(await store.load())
            finally:
                await store.stop()
            live = {**calm_rows, **storm_rows}
            assert {i.id: i.status_view() for i in rebuilt.values()} == \
                {k: {"status": v["status"], "output": v["output"]} for k, v in live.items()}
            assert 2 in {i.gen for i in rebuilt.values() if i.id.startswith("storm-")}
    finally:
        for p in procs:
            if p.returncode is None:
                p.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(p.wait(), 10)
                except TimeoutError:
                    p.kill()
        await sink.stop()
