"""The CLI end to end against Kafka/Redis/PostgreSQL/S3 with a live projector.

deploy v1 → promote → deploy v2 → promote → rollback → delete v2 → delete
worker → purge, then the audit trail holds exactly those actions, in order,
with their actor and verdict, and the purged bundles are gone from S3.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.endpoints import ROOT, Endpoints
from services.api.launcher import ControlStack, stack_env
from services.blobstore.factory import open_blob_store
from services.crypto.rootkey import RootKey


@pytest.fixture
def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
          tmp_path: Path) -> Iterator[ControlStack]:
    env = stack_env(services.as_env(), topic=unique_name("cli"), partitions=4,
                    redis_prefix=f"{unique_name('c')}:", database_url=fresh_database,
                    bucket=unique_name("b"), admin_token=f"adm-{secrets.token_hex(16)}",
                    root_keys=RootKey.generate().export())
    with ControlStack(env, tmp_path / "procs") as s:
        yield s


def wdl(stack: ControlStack, token: str, *args: str, stdin: str | None = None,
        ) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WDL_")}
    env.update({"WDL_CONTROL_URL": stack.url, "WDL_TOKEN": token,
                "WDL_CONFIG": "/nonexistent/wdl.toml"})
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env,
                          input=stdin, capture_output=True, text=True, timeout=180,
                          check=False)


def ok(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


def write_project_toml(root: Path, text: str) -> None:
    (root / "src").mkdir(parents=True)
    (root / "wrangler.toml").write_text(
        'name = "hello"\nmain = "src/index.js"\ncompatibility_date = "2025-06-01"\n'
        '[vars]\nGREETING = "hi"\nLIMITS = { max = 3 }\n[triggers]\ncrons = ["*/5 * * * *"]\n')
    (root / "src" / "lib.js").write_text(f'export const text = "{text}";\n')
    (root / "src" / "index.js").write_text(
        'import { text } from "./lib.js";\n'
        "export default { async fetch(req, env) { return new Response(text + env.GREETING) } };\n")


def write_project_jsonc(root: Path, text: str) -> None:
    root.mkdir(parents=True)
    (root / "wrangler.jsonc").write_text(
        '{\n  // a JSONC config, uploaded without bundling\n  "name": "hello",\n'
        '  "main": "index.js",\n  "compatibility_date": "2025-06-01",\n'
        '  "compatibility_flags": ["nodejs_compat"],\n  "vars": { "GREETING": "hey", },\n}\n')
    (root / "index.js").write_text(
        f"export default {{ async fetch() {{ return new Response({json.dumps(text)}) }} }};\n")


def test_cli_deploy_promote_rollback_delete_purge_and_audit(stack: ControlStack,
                                                            services: Endpoints,
                                                            tmp_path: Path) -> None:
    admin = stack.admin_token
    ok(wdl(stack, admin, "ns", "create", "e2e"))
    issued = json.loads(ok(wdl(stack, admin, "tokens", "issue", "--role", "deployer",
                                "--namespace", "e2e", "--label", "ci", "--json")))
    deployer, actor = issued["token"], f"token:{issued['token_id']}"

    write_project_toml(tmp_path / "v1", "one")
    v1 = ok(wdl(stack, deployer, "deploy", str(tmp_path / "v1"), "--ns", "e2e",
                "--no-promote")).strip()
    ok(wdl(stack, deployer, "promote", "hello", v1, "--ns", "e2e"))
    write_project_jsonc(tmp_path / "v2", "two")
    v2 = ok(wdl(stack, deployer, "deploy", str(tmp_path / "v2"), "--ns", "e2e", "--no-promote",
                "--no-bundle")).strip()
    assert v1 < v2  # version ids are time-ordered
    ok(wdl(stack, deployer, "promote", "hello", v2, "--ns", "e2e"))

    versions = {v["version_id"]: v for v in json.loads(
        ok(wdl(stack, deployer, "versions", "hello", "--ns", "e2e", "--json")))}
    assert versions[v2]["active"] and not versions[v1]["active"]
    assert versions[v1]["cron_triggers"] == ["*/5 * * * *"]
    assert versions[v1]["vars"] == {"GREETING": "hi"}
    assert versions[v1]["bindings"] == [{"kind": "json", "name": "LIMITS", "target": "",
                                         "value": '{"max":3}'}]
    assert [m["name"] for m in versions[v1]["modules"]] == ["index.js"]  # bundled
    assert versions[v2]["compatibility_flags"] == ["nodejs_compat"]

    # Deleting the active version is a verdict: refused, exit code 3.
    refused = wdl(stack, deployer, "delete", "version", "hello", v2, "--ns", "e2e")
    assert refused.returncode == 3, refused.stderr
    assert "version_active" in refused.stderr

    ok(wdl(stack, deployer, "rollback", "hello", "--ns", "e2e"))
    workers = json.loads(ok(wdl(stack, deployer, "workers", "--ns", "e2e", "--json")))
    assert [(w["name"], w["active_version"]) for w in workers] == [("hello", v1)]
    ok(wdl(stack, deployer, "delete", "version", "hello", v2, "--ns", "e2e"))

    digests = _digests(versions[v1]) | _digests(versions[v2])
    assert all(_blob_exists(services, stack, d) for d in digests)
    purged = json.loads(ok(wdl(stack, deployer, "delete", "worker", "hello", "--purge",
                               "--ns", "e2e", "--json")))
    assert purged["purge"]["verdict"]["accepted"]
    assert not any(_blob_exists(services, stack, d) for d in digests)
    assert json.loads(ok(wdl(stack, deployer, "workers", "--ns", "e2e", "--json"))) == []

    audit = json.loads(ok(wdl(stack, admin, "audit", "--ns", "e2e", "--worker", "hello",
                              "--json", "--all", "--limit", "3")))
    trail = [(a["type"], a["payload"].get("version_id"), a["actor"], a["accepted"], a["code"])
             for a in audit]
    assert trail == [
        ("worker.version_uploaded", v1, actor, True, None),
        ("worker.version_promoted", v1, actor, True, None),
        ("worker.version_uploaded", v2, actor, True, None),
        ("worker.version_promoted", v2, actor, True, None),
        ("worker.version_deleted", v2, actor, False, "version_active"),
        ("worker.rolled_back", v1, actor, True, None),
        ("worker.version_deleted", v2, actor, True, None),
        ("worker.deleted", None, actor, True, None),
        ("worker.purged", None, actor, True, None),
    ]
    accepted_only = json.loads(ok(wdl(stack, admin, "audit", "--ns", "e2e", "--verdict",
                                      "rejected", "--json")))
    assert [a["code"] for a in accepted_only] == ["version_active"]


def _digests(version: dict[str, Any]) -> set[str]:
    return {version["bundle_sha256"], *(m["sha256"] for m in version["modules"])}


def _blob_exists(services: Endpoints, stack: ControlStack, digest: str) -> bool:
    import asyncio

    async def check() -> bool:
        async with open_blob_store(stack.env["WDL_BLOB_URL"], environ=stack.env) as blobs:
            return await blobs.exists(digest)

    return asyncio.run(check())
