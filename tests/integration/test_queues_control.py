"""Queues as control state end to end: the real CLI (a subprocess) against the control API on
embedded backends. A wrangler project with producers and a consumer (retries, dead-letter
queue) deploys unchanged: deploy provisions the queues and sets the consumer; `wdl queues`
lists, changes and deletes them; bad input is refused with nothing written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.endpoints import ROOT
from projections.runtime import open_backends
from services.api.app import create_app
from services.blobstore.factory import open_blob_store
from services.crypto.config import load_keyring
from services.serving import HttpServer
from services.settings import Settings

pytestmark = pytest.mark.integration
ADMIN = "wdl_admin_queues_control_test_token"
CLI = "import sys; from cli.main import app; sys.argv[0] = 'wdl'; app()"
PROJECT = ROOT / "tests" / "fixtures" / "queue_project"


@dataclass
class Api:
    url: str


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    env = {"WDL_DATA_DIR": str(tmp_path / "data"), "WDL_ADMIN_TOKEN": ADMIN}
    settings = Settings.from_env(env, embedded=True)
    keyring = load_keyring({}, dev_key_file=tmp_path / "root.keys")
    async with contextlib.AsyncExitStack() as stack:
        backends = await stack.enter_async_context(open_backends(settings))
        blobs = await stack.enter_async_context(open_blob_store(settings.blob_url))
        app = create_app(settings, backends, keyring, blobs, run_projector=True)
        server = HttpServer(app, name="api", lifespan="on")
        await server.start()
        stack.push_async_callback(server.stop)
        yield Api(server.url)


async def wdl(api: Api, token: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WDL_")}
    env.update({"WDL_CONTROL_URL": api.url, "WDL_TOKEN": token,
                "WDL_CONFIG": "/nonexistent/wdl.toml", "PYTHONPATH": str(ROOT)})
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", CLI, *args], cwd=ROOT, env=env,
        capture_output=True, timeout=120, check=False)


def ok(done: subprocess.CompletedProcess[bytes]) -> bytes:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout!r}\n{done.stderr!r}"
    return done.stdout


def refused(done: subprocess.CompletedProcess[bytes], code: str) -> None:
    assert done.returncode != 0, done.stdout
    assert code.encode() in done.stderr, done.stderr


async def test_deploy_provisions_queues_and_sets_the_consumer(api: Api, tmp_path: Path) -> None:
    ns = f"q{uuid.uuid4().hex[:10]}"
    async with httpx.AsyncClient(base_url=api.url, timeout=30,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        assert (await client.post("/v1/namespaces", json={"name": ns})).status_code == 201
        other = f"o{uuid.uuid4().hex[:10]}"
        assert (await client.post("/v1/namespaces", json={"name": other})).status_code == 201
        r = await client.post("/v1/tokens", json={"role": "deployer", "namespaces": [other],
                                                 "label": "other"})
        outsider = r.json()["token"]

    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    ok(await wdl(api, ADMIN, "deploy", str(project), "--ns", ns, "--no-bundle"))
    queues = {q["name"]: q for q in json.loads(ok(await wdl(api, ADMIN, "queues", "list",
                                                             "--ns", ns, "--json")))}
    assert sorted(queues) == ["jobs", "jobs-dlq"]
    consumer = queues["jobs"]["consumer"]
    assert consumer == {"worker": "jobs-worker", "max_batch_size": 20, "max_batch_timeout": 1,
                        "max_retries": 2, "retry_delay": 0, "dead_letter_queue": "jobs-dlq",
                        "max_concurrency": 0}
    assert queues["jobs-dlq"]["consumer"] is None
    async with httpx.AsyncClient(base_url=api.url, timeout=30,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        worker = (await client.get(f"/v1/namespaces/{ns}/workers/jobs-worker")).json()
        version = (await client.get(f"/v1/namespaces/{ns}/workers/jobs-worker/versions/"
                                    f"{worker['active_version']}")).json()
    producers = sorted((b["name"], b["target"], b.get("value", "")) for b in version["bindings"]
                       if b["kind"] == "queue")
    assert producers == [("JOBS", "jobs", ""), ("LATER", "jobs", "2")]
    # Deploying again changes nothing: the queues exist and the consumer is the same worker.
    ok(await wdl(api, ADMIN, "deploy", str(project), "--ns", ns, "--no-bundle"))

    # The bound queue and the dead-letter queue are in use; nothing is deleted.
    refused(await wdl(api, ADMIN, "queues", "delete", "jobs", "--ns", ns), "resource_in_use")
    refused(await wdl(api, ADMIN, "queues", "delete", "jobs-dlq", "--ns", ns),
            "resource_in_use")
    # One consumer per queue; settings out of range are refused before any event.
    ok(await wdl(api, ADMIN, "queues", "create", "mail", "--ns", ns, "--delivery-delay", "5"))
    refused(await wdl(api, ADMIN, "queues", "consumer", "add", "mail", "nope", "--ns", ns),
            "worker_not_found")
    refused(await wdl(api, ADMIN, "queues", "consumer", "add", "mail", "jobs-worker",
                      "--dead-letter-queue", "missing", "--ns", ns), "queue_not_found")
    ok(await wdl(api, ADMIN, "queues", "consumer", "add", "mail", "jobs-worker", "--batch-size",
                 "100", "--message-retries", "0", "--ns", ns))
    refused(await wdl(api, ADMIN, "queues", "create", "Bad Name", "--ns", ns), "invalid")
    async with httpx.AsyncClient(base_url=api.url, timeout=30,
                                 headers={"Authorization": f"Bearer {ADMIN}"}) as client:
        r = await client.put(f"/v1/namespaces/{ns}/queues/mail/consumer",
                             json={"worker": "jobs-worker", "max_batch_size": 101})
        assert r.status_code == 422, r.text
        mail = (await client.get(f"/v1/namespaces/{ns}/queues/mail")).json()
    assert (mail["delivery_delay"], mail["consumer"]["max_batch_size"],
            mail["consumer"]["max_retries"]) == (5, 100, 0)

    # Another namespace's token sees none of it.
    refused(await wdl(api, outsider, "queues", "list", "--ns", ns), "namespace_not_found")

    refused(await wdl(api, ADMIN, "queues", "consumer", "remove", "mail", "other-worker",
                      "--ns", ns), "consumer_not_found")
    ok(await wdl(api, ADMIN, "queues", "consumer", "remove", "jobs", "jobs-worker", "--ns", ns))
    ok(await wdl(api, ADMIN, "queues", "delete", "jobs-dlq", "--ns", ns))
    ok(await wdl(api, ADMIN, "queues", "delete", "jobs", "--ns", ns, "--force"))
    names = [q["name"] for q in json.loads(ok(await wdl(api, ADMIN, "queues", "list", "--ns",
                                                         ns, "--json")))]
    assert names == ["mail"]
