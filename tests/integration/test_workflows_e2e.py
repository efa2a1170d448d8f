"""Workflows end to end on the real servers and real workerd, through `wdl deploy`.

The wrangler project tests/fixtures/workflow_project (step.do with retries,
step.sleep, step.waitForEvent, parallel steps) deploys unchanged; its steps
report every execution to a sink the test owns, so the test counts how often
each step really ran. Embedded (`wdl dev`'s SQLite log) and Kafka engines run
the same checks.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import Endpoints
from services.workflows.model import fold_all
from services.workflows.store import KafkaWorkflowSettings, KafkaWorkflowStore
from tests.embedded import embedded_platform
from tests.platform_stack import WDL, Stack, platform_stack
from tests.workflows.rig import PROJECT, TOKEN, EngineApi, Sink, Tenant, expected_sum


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with Sink() as s:
        yield s


async def exercise(tenant: Tenant, sink: Sink, engine: EngineApi) -> None:
    """The same checks on every engine: replay, sleep, events, retries, controls, errors."""
    # A flaky step is retried, a waiting instance wakes on its event.
    code, made = await tenant.call("/create", id="w1",
                                   params={"n": 5, "sink": sink.url, "wait": True, "flaky": True})
    assert (code, made) == (200, {"id": "w1"})
    assert (await tenant.wait_status("w1", {"waiting"}))["output"] is None
    await asyncio.sleep(1.5)  # past the sleep: now it waits for the event
    assert (await tenant.status("w1"))["status"] == "waiting"
    code, _ = await tenant.call("/event", id="w1", type="go", payload={"hello": 1})
    assert code == 200
    done = await tenant.wait_status("w1", {"complete", "errored"})
    assert done["status"] == "complete", done
    assert done["output"]["sum"] == expected_sum(5) and done["output"]["got"] == {"hello": 1}
    counts = sink.counts()
    assert counts[("w1", "one")] == 1
    assert counts[("w1", "two")] == 2  # the first attempt threw, the retry succeeded
    assert all(counts[("w1", f"par-{k}")] == 1 for k in (1, 2, 3))
    # Each recorded result is the one the last execution produced.
    assert done["output"]["execs"][1] == sink.last_exec("w1", "two")

    # An event sent before the wait is kept for it.
    await tenant.call("/create", id="w2", params={"n": 1, "wait": True, "sleep": "2 seconds"})
    await tenant.wait_status("w2", {"waiting"})
    assert (await tenant.call("/event", id="w2", type="go", payload=["early"]))[0] == 200
    st = await tenant.wait_status("w2", {"complete", "errored"})
    assert st["output"]["got"] == ["early"]

    # Pause holds an instance at a step boundary; resume continues it.
    await tenant.call("/create", id="w3", params={"n": 2, "wait": True})
    await tenant.wait_status("w3", {"waiting"})
    assert (await tenant.call("/pause", id="w3"))[0] == 200
    assert (await tenant.status("w3"))["status"] == "paused"
    assert (await tenant.call("/event", id="w3", type="go", payload=3))[0] == 200
    await asyncio.sleep(1.5)
    assert (await tenant.status("w3"))["status"] == "paused"
    await tenant.call("/resume", id="w3")
    assert (await tenant.wait_status("w3", {"complete"}))["output"]["got"] == 3

    # Terminate ends it; restart runs it again from the beginning on the same version.
    await tenant.call("/create", id="w4", params={"n": 4, "wait": True, "sink": sink.url})
    await tenant.wait_status("w4", {"waiting"})
    await tenant.call("/terminate", id="w4")
    assert (await tenant.status("w4"))["status"] == "terminated"
    code, body = await tenant.call("/terminate", id="w4")
    assert code == 400 and "finite state" in body["thrown"]["message"]
    await tenant.call("/restart", id="w4")
    await tenant.wait_status("w4", {"waiting"})
    assert sink.counts()[("w4", "one")] == 2  # a restart starts over
    await tenant.call("/event", id="w4", type="go", payload=None)
    assert (await tenant.wait_status("w4", {"complete"}))["output"]["sum"] == expected_sum(4)

    # createBatch, generated ids, and refusals with Cloudflare's messages.
    ids = await tenant.batch([{"params": {"n": 7}}, {"id": "b2", "params": {"n": 8}}])
    assert len(ids) == 2 and ids[1] == "b2" and len(ids[0]) == 36
    code, body = await tenant.call("/create", id="b2", params={"n": 1})
    assert code == 400 and body["thrown"]["message"] == \
        "Workflow instance with this id already exists"
    code, body = await tenant.call("/status", id="nope")
    assert code == 400 and body["thrown"]["message"] == "instance.not_found"
    code, body = await tenant.call("/create", id="bad id!", params={})
    assert code == 400 and body["thrown"]["message"] == \
        "WorkflowError: Workflow instance has invalid id"
    for iid in ids:
        assert (await tenant.wait_status(iid, {"complete"}))["output"]["got"] is None

    listed = await engine.instances(tenant.ns)
    assert {"w1", "w2", "w3", "w4", "b2"} <= set(listed)
    assert all(i["version"] == listed["w1"]["version"] for i in listed.values())


async def test_embedded_engine(services: Endpoints, tmp_path: Path, sink: Sink,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`wdl dev`'s shape: every component in one process on embedded backends (the real
    workerd of `services`; the servers' variables are cleared for this process)."""
    async with embedded_platform(services, tmp_path, monkeypatch, project=PROJECT,
                                 internal_token=TOKEN) as (platform, _):
        assert platform.gateway is not None and platform.workflows is not None
        assert await platform.workflows.leading(20)
        tenant, engine = Tenant(platform.gateway.url, "emb"), EngineApi(platform.workflows.url)
        try:
            await exercise(tenant, sink, engine)
        finally:
            await tenant.close()
            await engine.close()
    assert (tmp_path / "data" / "workflows.sqlite").exists()


async def test_kafka_engine(services: Endpoints, fresh_database: str,
                            unique_name: Callable[[str], str], tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch, sink: Sink) -> None:
    """`wdl up`'s shape: the engine on its Kafka topic, beside the control log."""
    monkeypatch.delenv("WDL_WORKFLOW_LOG", raising=False)
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=frozenset({"api", "projector", "state", "data",
                                                    "gateway", "workflows"}),
                              egress_allow_loopback=True) as stack:
        ns = unique_name("wf")[:30].lower().replace("_", "-")
        await stack.wdl("ns", "create", ns)
        await stack.deploy(ns, PROJECT)
        workflows = stack.platform.workflows
        assert workflows is not None and await workflows.leading(20)
        tenant, engine = Tenant(stack.gateway, ns), EngineApi(workflows.url)
        try:
            await exercise(tenant, sink, engine)
            await through_the_cli(stack, tenant, ns)
            other_ns = unique_name("wf2")[:30].lower().replace("_", "-")
            await isolated(stack, tenant, other_ns)
            await pinned(stack, tenant, engine, ns)
            live = {k: v["status"] for k, v in (await engine.instances(ns)).items()}
            async with httpx.AsyncClient(timeout=10) as client:
                text = (await client.get(workflows.url + "/metrics",
                                         headers={"authorization": f"Bearer {TOKEN}"})).text
        finally:
            await tenant.close()
            await engine.close()
        # A rebuild from the topic alone reproduces every status.
        assert workflows.store.settings.topic == stack.backend_env["WDL_TOPIC"] + ".workflows"
        rebuilt = await rebuild(stack)
        assert {i.namespace for i in rebuilt.values()} == {ns, other_ns}
        assert {i.id: i.status for i in rebuilt.values() if i.namespace == ns} == live
        complete = sum(1 for i in rebuilt.values() if i.status == "complete")
        assert f'wdl_workflow_instances{{status="complete"}} {complete}.0' in text
        assert 'wdl_workflow_invocations_total{outcome="ok"}' in text
        assert 'wdl_workflow_records_total{type="step_succeeded"}' in text


async def through_the_cli(stack: Stack, tenant: Tenant, ns: str) -> None:
    """`wdl workflows …` through the control API."""
    await tenant.call("/create", id="cli1", params={"n": 2, "wait": True})
    await tenant.wait_status("cli1", {"waiting"})
    rows = json.loads(await stack.wdl("workflows", "list", "--ns", ns, "--json"))
    assert [(r["workflow"], r["class_name"]) for r in rows] == [("orders", "OrderFlow")]
    listed = json.loads(await stack.wdl("workflows", "instances", "orders", "--ns", ns,
                                        "--status", "waiting", "--json"))
    assert [r["id"] for r in listed] == ["cli1"]
    await stack.wdl("workflows", "pause", "orders", "cli1", "--ns", ns)
    doc = json.loads(await stack.wdl("workflows", "status", "orders", "cli1", "--ns", ns,
                                     "--json"))
    assert doc["status"] == "paused"
    await stack.wdl("workflows", "resume", "orders", "cli1", "--ns", ns)
    await stack.wdl("workflows", "send-event", "orders", "cli1", "--type", "go",
                    "--payload", '{"from": "cli"}', "--ns", ns)
    assert (await tenant.wait_status("cli1", {"complete"}))["output"]["got"] == {"from": "cli"}
    missing = await stack.wdl("workflows", "status", "orders", "nope", "--ns", ns, ok=False)
    assert missing == ""
    # A refusal says why, and a namespace that does not exist is not found.
    proc = await asyncio.create_subprocess_exec(
        WDL, "workflows", "status", "orders", "nope", "--ns", ns, env=stack.env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await proc.communicate()
    assert proc.returncode != 0 and "instance_not_found" in err.decode()


async def isolated(stack: Stack, tenant: Tenant, other_ns: str) -> None:
    """Namespaces never share instances, and the engine's door is the platform's only."""
    await stack.wdl("ns", "create", other_ns)
    await stack.deploy(other_ns, PROJECT)
    other = Tenant(stack.gateway, other_ns)
    try:
        code, body = await other.call("/status", id="w1")  # w1 exists in the first namespace
        assert code == 400 and body["thrown"]["message"] == "instance.not_found"
        assert (await other.call("/create", id="w1", params={"n": 9}))[0] == 200
        done = await other.wait_status("w1", {"complete"})
        assert done["output"]["sum"] == expected_sum(9)
        assert (await tenant.status("w1"))["output"]["sum"] == expected_sum(5)
    finally:
        await other.close()
    async with httpx.AsyncClient(timeout=10) as client:
        r = await client.post(stack.gateway + "/__wdl/workflow", json={
            "namespace": tenant.ns, "worker": "flows", "version_id": "x", "class_name": "X"},
            headers={"host": f"{other_ns}.workers.local"})
        assert r.status_code == 401  # without the internal token nothing runs


async def pinned(stack: Stack, tenant: Tenant, engine: EngineApi, ns: str) -> None:
    """An instance stays on the version it was created on, across a new deploy."""
    await tenant.call("/create", id="pin1", params={"n": 1, "wait": True})
    await tenant.wait_status("pin1", {"waiting"})
    v2 = stack.tmp / "flows-v2"
    shutil.copytree(PROJECT, v2)
    toml = v2 / "wrangler.toml"
    toml.write_text(toml.read_text().replace('TAG = "v1"', 'TAG = "v2"'))
    new_version = await stack.deploy(ns, v2)
    await tenant.call("/create", id="pin2", params={"n": 1, "wait": True})
    await tenant.wait_status("pin2", {"waiting"})
    for iid in ("pin1", "pin2"):
        assert (await tenant.call("/event", id=iid, type="go", payload=[iid]))[0] == 200
    assert (await tenant.wait_status("pin1", {"complete"}))["output"]["tag"] == "v1"
    assert (await tenant.wait_status("pin2", {"complete"}))["output"]["tag"] == "v2"
    rows = await engine.instances(ns)
    assert rows["pin2"]["version"] == new_version != rows["pin1"]["version"]


async def rebuild(stack: Stack) -> dict[str, Any]:
    store = KafkaWorkflowStore(KafkaWorkflowSettings(
        stack.backend_env["KAFKA_BOOTSTRAP_SERVERS"],
        topic=stack.backend_env["WDL_TOPIC"] + ".workflows"))
    await store.start()
    try:
        return fold_all(await store.load())
    finally:
        await store.stop()


