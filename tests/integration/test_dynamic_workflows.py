"""The published `@cloudflare/dynamic-workflows` (0.1.1) unchanged on WDL (issue 25).

tests/fixtures/dynamic_workflows is the library README's dispatcher (wrangler.jsonc as the
README shows it) with two tenants whose TenantWorkflow classes differ (steps, a sleep, a
waitForEvent answered through the library's InstanceStub). Its package.json pins the
library; npm installs it (cached under .wdl/npm/ by the lockfile's digest) and `wdl
deploy` bundles it with wrangler. The fixture's calls.json runs under Miniflare
(tests/miniflare/dynamic_workflows_reference.mjs, workerd's own loader and Miniflare's
Workflows) and on WDL - the real servers with the Kafka workflow log, and `wdl dev` - and
the transcripts must agree call by call. The engine is SIGKILLed in the middle of a run in
test_dynamic_workflows_fault.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.integration.test_dataplane_dev import Dev
from tests.npm_fixture import node_modules
from tests.platform_stack import platform_stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

FIXTURE = ROOT / "tests" / "fixtures" / "dynamic_workflows"
CALLS: list[dict[str, Any]] = json.loads((FIXTURE / "calls.json").read_text())
WRANGLER = ROOT / "workerd" / "node_modules" / ".bin" / "wrangler"
WORKER = "my-dispatcher"


def project(dest: Path, kv: bool = False) -> Path:
    """The fixture as a project directory; `kv`: the dispatcher gets a KV namespace too
    (passed on to the tenants, whose steps count their executions in it)."""
    directory = dest / "dynamic-workflows"
    shutil.copytree(FIXTURE, directory, ignore=shutil.ignore_patterns("node_modules"))
    (directory / "node_modules").symlink_to(node_modules(FIXTURE, "dynamic-workflows"),
                                           target_is_directory=True)
    if kv:
        config = directory / "wrangler.jsonc"
        text = config.read_text()
        at = text.rindex("}")
        config.write_text(text[:at].rstrip() +
                          ',\n  "kv_namespaces": [{ "binding": "KV", "id": "counts" }]\n}\n')
    return directory


def miniflare_transcript(tmp: Path) -> list[dict[str, Any]]:
    directory = project(tmp / "miniflare")
    out = tmp / "miniflare" / "out"
    subprocess.run([str(WRANGLER), "deploy", "--dry-run", "--outdir", str(out)],
                   cwd=directory, capture_output=True, text=True, timeout=180, check=True,
                   env={**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "true"})
    done = subprocess.run(["node", str(ROOT / "tests/miniflare/dynamic_workflows_reference.mjs"),
                           str(out / "index.js")], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=True)
    transcript: list[dict[str, Any]] = json.loads(done.stdout)
    return transcript


async def run_calls(base: str, headers: dict[str, str], prefix: str = "",
                    calls: list[dict[str, Any]] = CALLS) -> list[dict[str, Any]]:
    """calls.json against a WDL gateway, as the Miniflare script runs it."""
    transcript: list[dict[str, Any]] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as client:
        async def once(call: dict[str, Any]) -> dict[str, Any]:
            h = {**headers, "x-tenant-id": call["tenant"]}
            if "body" in call:
                r = await client.post(prefix + call["path"], headers=h,
                                      content=json.dumps(call["body"]))
            else:
                r = await client.get(prefix + call["path"], headers=h)
            try:
                body: Any = r.json()
            except ValueError:
                body = r.text
            return {"name": call["name"], "status": r.status_code, "body": body}

        for call in calls:
            entry = await once(call)
            deadline = time.monotonic() + 60
            while ("until" in call and isinstance(entry["body"], dict) and
                   entry["body"].get("status") != call["until"] and
                   entry["body"].get("status") not in ("errored", "terminated") and
                   time.monotonic() < deadline):
                await asyncio.sleep(0.2)
                entry = await once(call)
            transcript.append(entry)
    return transcript


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return miniflare_transcript(tmp_path_factory.mktemp("dwf"))


def test_miniflare_runs_both_tenants(reference: list[dict[str, Any]]) -> None:
    """The reference itself: two different workflows to completion."""
    by_name = {c["name"]: c for c in reference}
    assert by_name["t1 complete"]["body"]["output"] == {
        "tenant": "t1", "order": "A-1", "total": 21, "approvedBy": "alice"}
    assert by_name["t2 complete"]["body"]["output"] == {
        "tenant": "t2", "sum": 14, "label": "batch-14", "steps": 4}


async def test_kafka_engine_matches_miniflare(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        reference: list[dict[str, Any]]) -> None:
    """`wdl up`'s shape: the engine on its Kafka topic."""
    monkeypatch.delenv("WDL_WORKFLOW_LOG", raising=False)
    directory = await asyncio.to_thread(project, tmp_path)
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=frozenset({"api", "projector", "state", "data",
                                                    "gateway", "workflows"})) as stack:
        ns = unique_name("dwf")[:30].lower().replace("_", "-")
        await stack.wdl("ns", "create", ns)
        await stack.deploy(ns, directory)
        workflows = stack.platform.workflows
        assert workflows is not None and await workflows.leading(20)
        ours = await run_calls(stack.gateway, {"host": f"{ns}.workers.local"}, f"/{WORKER}")
    assert ours == reference, json.dumps({"wdl": ours, "miniflare": reference}, indent=1)


def test_wdl_dev_matches_miniflare(dev: Dev, tmp_path: Path,
                                   reference: list[dict[str, Any]]) -> None:
    """Embedded `wdl dev` (SQLite workflow log) of the same project."""
    directory = project(tmp_path)
    dev.start()
    dev.cli("ns", "create", "dyn")
    dev.cli("deploy", str(directory), "--ns", "dyn")
    ours = asyncio.run(run_calls(f"http://127.0.0.1:{dev.gateway_port}",
                                 {"host": "dyn.workers.local"}, f"/{WORKER}"))
    assert ours == reference, json.dumps({"wdl": ours, "miniflare": reference}, indent=1)
