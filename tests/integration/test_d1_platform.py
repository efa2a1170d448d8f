"""D1 on the whole platform: `wdl deploy` with a d1_databases binding (provisioned
with the project's database_id), the real gateway and workerd, the D1 owner
service on Kafka/Redis leases, and `wdl d1` through the control API.

The Miniflare conformance transcript runs against a deployed worker here.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.platform_stack import Stack, platform_stack

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
WORKER = (ROOT / "tests/workers/d1_conformance.js").read_text()
BINDING = ('\n[[d1_databases]]\nbinding = "DB"\ndatabase_name = "%s"\n'
           'database_id = "%s"\nmigrations_dir = "migrations"\n')
COMPONENTS = frozenset({"api", "projector", "state", "data", "gateway", "d1"})

# Calls whose outcome legitimately differs from Miniflare; each is explained in
# docs/compatibility.md, "## D1". (None today: meta fields that depend on the
# engine are compared by type, in the worker.)
DOCUMENTED_DIFFERENCES: set[str] = set()


@pytest.fixture(scope="module")
def miniflare_transcript() -> list[dict[str, Any]]:
    out = subprocess.run(["node", str(ROOT / "tests/miniflare/d1_reference.mjs")], cwd=ROOT,
                         capture_output=True, text=True, timeout=180, check=True)
    transcript: list[dict[str, Any]] = json.loads(out.stdout)
    return transcript


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=COMPONENTS) as s:
        yield s


async def _deploy(stack: Stack, ns: str, worker: str, db: str, db_id: str) -> Path:
    project = stack.project(worker, WORKER)
    toml = project / "wrangler.toml"
    toml.write_text(toml.read_text() + BINDING % (db, db_id))
    await stack.deploy(ns, project)
    return project


async def _get(stack: Stack, ns: str, path: str, **params: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=120) as client:
        return await client.get(stack.gateway + path, params=params,
                                headers={"host": f"{ns}.workers.local"})


async def _sql(stack: Stack, ns: str, worker: str, q: str, *params: Any) -> httpx.Response:
    return await _get(stack, ns, f"/{worker}/sql", q=q, p=json.dumps(list(params)))


async def test_deployed_worker_matches_miniflare(
        stack: Stack, miniflare_transcript: list[dict[str, Any]]) -> None:
    await stack.wdl("ns", "create", "acme")
    db_id = str(uuid.uuid4())
    await _deploy(stack, "acme", "conf", "conformance", db_id)
    rows = json.loads(await stack.wdl("d1", "list", "--ns", "acme", "--json"))
    assert [(r["name"], r["database_id"]) for r in rows] == [("conformance", db_id)]
    r = await _get(stack, "acme", "/conf/")
    assert r.status_code == 200, r.text
    ours = r.json()
    assert len(ours) >= 20
    assert [c["name"] for c in ours] == [c["name"] for c in miniflare_transcript]
    differing = {mine["name"] for mine, ref in zip(ours, miniflare_transcript, strict=True)
                 if mine != ref}
    assert differing == DOCUMENTED_DIFFERENCES, json.dumps(
        [(m, ref) for m, ref in zip(ours, miniflare_transcript, strict=True)
         if m["name"] in differing - DOCUMENTED_DIFFERENCES], ensure_ascii=False, indent=1)


async def test_cli_reads_what_the_worker_wrote_and_namespaces_stay_apart(
        stack: Stack) -> None:
    for ns in ("acme", "other"):
        await stack.wdl("ns", "create", ns)
    # `other` names acme's database id (and name): ids are per namespace, so it gets a
    # database of its own, never acme's file.
    shared_id = str(uuid.uuid4())
    project = await _deploy(stack, "acme", "app", "main", shared_id)
    await _deploy(stack, "other", "app", "main", shared_id)
    # Migrations as wrangler lays them out, applied through the CLI and recorded.
    migrations = project / "migrations"
    migrations.mkdir()
    (migrations / "0001_init.sql").write_text(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);\n")
    (migrations / "0002_tag.sql").write_text("ALTER TABLE notes ADD COLUMN tag TEXT;\n")
    opts = ("--ns", "acme", "--project", str(project))
    listed = json.loads(await stack.wdl("d1", "migrations", "list", "DB", *opts, "--json"))
    assert [(m["name"], m["status"]) for m in listed] == [("0001_init.sql", "pending"),
                                                          ("0002_tag.sql", "pending")]
    applied = json.loads(await stack.wdl("d1", "migrations", "apply", "DB", *opts, "--json"))
    assert applied["applied"] == ["0001_init.sql", "0002_tag.sql"]
    again = json.loads(await stack.wdl("d1", "migrations", "apply", "DB", *opts, "--json"))
    assert again["applied"] == []
    record = json.loads(await stack.wdl("d1", "list", "--ns", "acme", "--json"))[0]
    assert record["migrations"] == ["0001_init.sql", "0002_tag.sql"]

    r = await _sql(stack, "acme", "app", "INSERT INTO notes (body, tag) VALUES (?, ?)",
                   "from the worker", "w")
    assert r.status_code == 200, r.text
    out = json.loads(await stack.wdl("d1", "execute", "main", "--ns", "acme", "--command",
                                     "SELECT body, tag FROM notes", "--json"))
    assert out[0]["results"] == [{"body": "from the worker", "tag": "w"}]
    # Namespace `other` has its own database `main`: no table notes there.
    r = await _sql(stack, "other", "app", "SELECT * FROM notes")
    assert r.status_code == 500 and "no such table: notes" in r.json()["error"]
    # Tenant SQL cannot reach the platform's fence table.
    r = await _sql(stack, "acme", "app", "UPDATE _wdl_fence SET generation = 0")
    assert r.status_code == 500 and "not authorized" in r.json()["error"]

    # A bad statement from the CLI: refused, and nothing of its transaction stays.
    bad = await stack.wdl("d1", "execute", "main", "--ns", "acme", "--command",
                          "INSERT INTO notes (body) VALUES ('x'); INSERT INTO nope VALUES (1)",
                          ok=False)
    assert bad == ""
    count = json.loads(await stack.wdl("d1", "execute", "main", "--ns", "acme", "--command",
                                       "SELECT count(*) AS n FROM notes", "--json"))
    assert count[0]["results"] == [{"n": 1}]

    # Backup, change, restore: the backup's rows come back.
    backup_id = (await stack.wdl("d1", "backup", "main", "--ns", "acme")).strip()
    await stack.wdl("d1", "execute", "main", "--ns", "acme", "--command", "DELETE FROM notes")
    backups = json.loads(await stack.wdl("d1", "backups", "main", "--ns", "acme", "--json"))
    assert [b["backup_id"] for b in backups] == [backup_id]
    await stack.wdl("d1", "restore", "main", "--ns", "acme", "--backup", backup_id)
    r = await _sql(stack, "acme", "app", "SELECT body FROM notes")
    assert r.json()["results"] == [{"body": "from the worker"}]
    dump = await stack.wdl("d1", "export", "main", "--ns", "acme")
    assert "CREATE TABLE notes" in dump and "from the worker" in dump
    assert "_wdl_fence" not in dump
    # Bound by the active version: delete refused unless forced.
    refused = await stack.wdl("d1", "delete", "main", "--ns", "acme", ok=False)
    assert refused == ""
    await stack.wdl("d1", "delete", "main", "--ns", "acme", "--force")
    r = await _sql(stack, "acme", "app", "SELECT 1")
    assert r.status_code == 500 and "does not exist" in r.json()["error"]
    # Created again under the same name: a new, empty database (another file).
    await stack.wdl("d1", "create", "main", "--ns", "acme")
    r = await _sql(stack, "acme", "app", "SELECT * FROM notes")
    assert r.status_code == 500 and "no such table: notes" in r.json()["error"]
