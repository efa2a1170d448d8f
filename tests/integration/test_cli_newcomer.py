"""The first minutes with `wdl`, through the real CLI on `wdl dev`: init → deploy →
served, whoami, doctor naming a failing check's fix, deploy's namespace hint."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.integration.test_dataplane_dev import WDL, Dev


@pytest.fixture
def dev(services: Endpoints, tmp_path: Path) -> Iterator[Dev]:
    assert services.workerd_bin
    d = Dev(tmp_path / "data", services.workerd_bin)
    try:
        d.start()
        yield d
    finally:
        d.kill()


def run(dev: Dev, *args: str, token: str | None = None) -> subprocess.CompletedProcess[str]:
    """`wdl ARGS` with the dev platform's URL and (default: admin) token; any exit code."""
    admin = (Path(dev.env["WDL_DATA_DIR"]) / "admin.token").read_text().strip()
    env = {**dev.env, "WDL_CONTROL_URL": f"http://127.0.0.1:{dev.api_port}",
           "WDL_TOKEN": token or admin,
           "WDL_CONFIG": str(Path(dev.env["WDL_DATA_DIR"]) / "x.toml")}
    return subprocess.run([WDL, *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=ROOT, check=False)


def test_init_scaffolds_projects_that_deploy_and_answer(dev: Dev, tmp_path: Path) -> None:
    hello, kv, r2 = tmp_path / "hello-app", tmp_path / "kv-app", tmp_path / "r2-app"
    dev.cli("init", str(hello))
    dev.cli("init", str(kv), "--template", "kv", "--name", "notes")
    dev.cli("init", str(r2), "--template", "r2", "--name", "files")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("x")
    refused = run(dev, "init", str(tmp_path / "full"))
    assert refused.returncode == 2 and "not empty" in refused.stderr

    dev.cli("deploy", str(hello), "--ns", "fresh", "--create-namespace")
    r = dev.get("fresh.workers.local", "/hello-app/there")
    assert (r.status_code, r.text) == (200, "Hello from hello-app! You asked for /there\n")
    dev.cli("deploy", str(kv), "--ns", "fresh")  # the KV namespace is provisioned
    put = httpx.put(f"http://127.0.0.1:{dev.gateway_port}/notes/greeting", content=b"hi",
                    headers={"host": "fresh.workers.local"}, timeout=10)
    assert put.status_code == 200
    assert dev.get("fresh.workers.local", "/notes/greeting").text == "hi"

    dev.cli("deploy", str(r2), "--ns", "fresh")  # the bucket is provisioned
    buckets = json.loads(dev.cli("r2", "bucket", "list", "--ns", "fresh", "--json"))
    assert [b["name"] for b in buckets] == ["files-files"]
    body = bytes(range(256)) * 4
    put = httpx.put(f"http://127.0.0.1:{dev.gateway_port}/files/docs/a.bin", content=body,
                    headers={"host": "fresh.workers.local"}, timeout=10)
    assert (put.status_code, put.json()) == (200, {"key": "docs/a.bin", "size": len(body)})
    got = dev.get("fresh.workers.local", "/files/docs/a.bin")
    assert (got.status_code, got.content) == (200, body)
    assert dev.get("fresh.workers.local", "/files/missing").status_code == 404
    listed = json.loads(dev.cli("r2", "object", "list", "files-files", "--ns", "fresh",
                                "--json"))
    assert [(o["key"], o["size"]) for o in listed["objects"]] == [("docs/a.bin", len(body))]
    # In a pipe the table rows are whole: the active version id can be copied from it.
    workers = json.loads(dev.cli("workers", "--ns", "fresh", "--json"))
    shown = dev.cli("workers", "--ns", "fresh")
    for w in workers:
        assert any(w["name"] in line and w["active_version"] in line
                   for line in shown.splitlines()), shown


def test_whoami_shows_the_token_in_use(dev: Dev) -> None:
    me = json.loads(dev.cli("whoami", "--json"))
    assert (me["token_id"], me["role"], me["all_namespaces"]) == ("bootstrap", "admin", True)
    dev.cli("ns", "create", "team")
    issued = json.loads(dev.cli("tokens", "issue", "--role", "deployer", "--namespace",
                                "team", "--label", "ci", "--ttl", "3600", "--json"))
    done = run(dev, "whoami", token=issued["token"])
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(None, 1) for line in done.stdout.splitlines())
    assert lines["token"] == issued["token_id"] and lines["role"] == "deployer"
    assert (lines["namespaces"], lines["label"]) == ("team", "ci")
    assert lines["expires"] != "never"
    bad = run(dev, "whoami", token="wdl_nope_nope")
    assert bad.returncode == 1 and "unauthenticated" in bad.stderr
    assert "hint:" in bad.stderr and "WDL_TOKEN" in bad.stderr


def test_doctor_passes_then_names_the_fix_of_a_failing_check(dev: Dev) -> None:
    report = json.loads(dev.cli("doctor", "--json"))
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == ["config", "control API", "token",
                                                     "wrangler", "node"]
    done = run(dev, "doctor", "--url", "http://127.0.0.1:1")
    assert done.returncode == 1
    failing = [line for line in done.stdout.splitlines() if line.startswith("✗")]
    assert failing == ["✗ control API: http://127.0.0.1:1: ConnectError"], done.stdout
    assert "fix: start the platform (`wdl dev`)" in done.stdout


def test_deploy_to_a_missing_namespace_names_the_fix(dev: Dev, tmp_path: Path) -> None:
    dev.cli("init", str(tmp_path / "app"))
    done = run(dev, "deploy", str(tmp_path / "app"), "--ns", "nowhere")
    assert done.returncode == 1 and "namespace_not_found" in done.stderr
    assert "wdl ns create nowhere" in done.stderr and "--create-namespace" in done.stderr
