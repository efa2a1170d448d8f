"""The Workflows API call by call against Miniflare's simulation.

tests/workers/workflow_conformance.js runs under Miniflare
(tests/miniflare/workflow_reference.mjs) and on the platform (real servers,
real workerd, the Kafka engine); the transcripts must be equal except for the
entries in DOCUMENTED_DIFFERENCES (docs/compatibility.md, "## Workflows"), so a
new difference fails.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.platform_stack import platform_stack

WORKER = ROOT / "tests" / "workers" / "workflow_conformance.js"

DOCUMENTED_DIFFERENCES: set[str] = {
    # Miniflare reports an instance blocked in waitForEvent as "running"; WDL (like
    # Cloudflare's dashboard) says "waiting", as for a sleep.
    "waiting for the event", "resume", "restart",
    # Miniflare accepts a second create() with an existing id; WDL refuses it.
    "create duplicate id",
}


def miniflare_transcript() -> list[dict[str, Any]]:
    out = subprocess.run(["node", str(ROOT / "tests/miniflare/workflow_reference.mjs")],
                         cwd=ROOT, capture_output=True, text=True, timeout=180, check=True)
    result: list[dict[str, Any]] = json.loads(out.stdout)
    return result


async def test_transcript_matches_miniflare(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    reference = miniflare_transcript()
    project = tmp_path / "conformance"
    (project / "src").mkdir(parents=True)
    shutil.copy(WORKER, project / "src" / "index.js")
    (project / "wrangler.toml").write_text(
        'name = "conformance"\nmain = "src/index.js"\ncompatibility_date = "2025-11-17"\n'
        '[[workflows]]\nname = "conformance"\nbinding = "FLOW"\nclass_name = "Flow"\n')
    monkeypatch.delenv("WDL_WORKFLOW_LOG", raising=False)
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=frozenset({"api", "projector", "state", "data",
                                                    "gateway", "workflows"})) as stack:
        assert stack.platform.workflows is not None
        assert await stack.platform.workflows.leading(20)
        ns = unique_name("wfc")[:30].lower().replace("_", "-")
        await stack.wdl("ns", "create", ns)
        await stack.deploy(ns, project)
        async with httpx.AsyncClient(timeout=120) as client:
            r = await client.get(stack.gateway + "/conformance/",
                                 headers={"host": f"{ns}.workers.local"})
        assert r.status_code == 200, r.text
        ours: list[dict[str, Any]] = r.json()
    assert [c["name"] for c in ours] == [c["name"] for c in reference]
    unexpected = {mine["name"]: {"wdl": mine, "miniflare": ref}
                  for mine, ref in zip(ours, reference, strict=True)
                  if mine != ref and mine["name"] not in DOCUMENTED_DIFFERENCES}
    assert not unexpected
    differing = {mine["name"] for mine, ref in zip(ours, reference, strict=True) if mine != ref}
    assert differing == DOCUMENTED_DIFFERENCES
