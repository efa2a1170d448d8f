"""Durable Objects through the real path: wrangler project -> `wdl deploy` -> gateway
(WdlDo) -> the DO host (services/objects/, workerd facets) on the real servers.

The conformance worker (tests/workers/do_conformance.js) runs here and under Miniflare
(tests/miniflare/do_reference.mjs); the two transcripts must agree call by call, except
the differences docs/compatibility.md lists ("## Durable Objects"), named in
DOCUMENTED_DIFFERENCES (so a new difference fails).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.platform_stack import Stack, platform_stack

pytestmark = pytest.mark.integration

DOCUMENTED_DIFFERENCES: set[str] = set()

COMPONENTS = frozenset({"api", "projector", "state", "data", "gateway", "objects"})

WRANGLER = """name = "{name}"
main = "src/index.js"
compatibility_date = "2025-11-17"

[[durable_objects.bindings]]
name = "OBJ"
class_name = "{cls}"
{script}
[[migrations]]
tag = "v1"
new_sqlite_classes = ["{cls}"]
"""


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=COMPONENTS) as s:
        yield s


@pytest.fixture(scope="module")
def miniflare_transcript() -> list[dict[str, Any]]:
    out = subprocess.run(["node", str(ROOT / "tests/miniflare/do_reference.mjs")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, check=True)
    transcript: list[dict[str, Any]] = json.loads(out.stdout)
    return transcript


def project(stack: Stack, name: str, source: str, cls: str = "Conformance",
            script: str = "") -> Path:
    directory = stack.tmp / f"{name}-{abs(hash((source, cls, script))) % 10**8}"
    (directory / "src").mkdir(parents=True, exist_ok=True)
    line = f'script_name = "{script}"\n' if script else ""
    (directory / "wrangler.toml").write_text(WRANGLER.format(name=name, cls=cls, script=line))
    (directory / "src" / "index.js").write_text(source)
    return directory


async def get(stack: Stack, ns: str, worker: str, path: str = "/") -> httpx.Response:
    async with httpx.AsyncClient(timeout=60) as client:
        return await client.get(f"{stack.gateway}/{worker}{path}",
                                headers={"host": f"{ns}.workers.local"})


async def test_transcript_matches_miniflare(stack: Stack,
                                            miniflare_transcript: list[dict[str, Any]]) -> None:
    source = (ROOT / "tests/workers/do_conformance.js").read_text()
    await stack.deploy("acme", project(stack, "conf", source), "--create-namespace")
    r = await get(stack, "acme", "conf")
    assert r.status_code == 200, r.text
    ours: list[dict[str, Any]] = r.json()
    assert [c["name"] for c in ours] == [c["name"] for c in miniflare_transcript]
    assert len(ours) >= 15
    differing = {mine["name"] for mine, ref in zip(ours, miniflare_transcript, strict=True)
                 if mine != ref}
    unexpected = {mine["name"]: {"wdl": mine, "miniflare": ref}
                  for mine, ref in zip(ours, miniflare_transcript, strict=True)
                  if mine != ref and mine["name"] not in DOCUMENTED_DIFFERENCES}
    assert not unexpected, json.dumps(unexpected, indent=1)
    assert differing == DOCUMENTED_DIFFERENCES
