"""`wdl r2 object …` end to end: the real CLI (a subprocess) against the control API with
the R2 data routes, served in this process on embedded backends (SQLite log, in-memory
projection) with a directory R2 store; buckets are created by events through the API.

Covers the namespace scoping (an observer reads but cannot write, another namespace's
token sees nothing), streamed put/get of a file, head, list with prefix/delimiter and
delete, and keys that look like paths (`../`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import subprocess
import sys
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
from services.r2 import open_r2_store
from services.serving import HttpServer
from services.settings import Settings

pytestmark = pytest.mark.integration
ADMIN = "wdl_admin_r2_cli_test_token"
CLI = "import sys; from cli.r2 import app; sys.argv[0] = 'wdl r2'; app()"


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
        r2 = await stack.enter_async_context(open_r2_store(settings.r2_url))
        app = create_app(settings, backends, keyring, blobs, run_projector=True, r2=r2)
        server = HttpServer(app, name="api", lifespan="on")
        await server.start()
        stack.push_async_callback(server.stop)
        yield Api(server.url)


async def wdl(api: Api, token: str, *args: str, stdin: bytes | None = None,
              cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    # In a thread: the API serves on this test's event loop.
    env = {k: v for k, v in os.environ.items() if not k.startswith("WDL_")}
    env.update({"WDL_CONTROL_URL": api.url, "WDL_TOKEN": token,
                "WDL_CONFIG": "/nonexistent/wdl.toml", "PYTHONPATH": str(ROOT)})
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-c", CLI, *args], cwd=cwd or ROOT, env=env,
        input=stdin, capture_output=True, timeout=120, check=False)


def ok(done: subprocess.CompletedProcess[bytes]) -> bytes:
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout!r}\n{done.stderr!r}"
    return done.stdout


async def _setup(api: Api) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {ADMIN}"}
    tokens: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as client:
        for ns in ("media", "other"):
            r = await client.post("/v1/namespaces", json={"name": ns})
            assert r.status_code in (200, 201), r.text
            r = await client.post(f"/v1/namespaces/{ns}/r2", json={"name": "photos"})
            assert r.status_code == 201, r.text
        for role, ns in (("deployer", "media"), ("observer", "media"), ("deployer", "other")):
            r = await client.post("/v1/tokens", json={"role": role, "namespaces": [ns],
                                                     "label": f"{role}-{ns}"})
            assert r.status_code in (200, 201), r.text
            tokens[f"{role}-{ns}"] = r.json()["token"]
    return tokens


async def test_object_commands(api: Api, tmp_path: Path) -> None:
    tokens = await _setup(api)
    deployer, observer = tokens["deployer-media"], tokens["observer-media"]
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "cat.bin").write_bytes(data)

    put = json.loads(ok(await wdl(api, deployer, "object", "put", "photos/2026/cat.bin", "--ns",
                            "media", "--file", str(tmp_path / "cat.bin"), "--content-type",
                            "image/x-cat", "--custom-metadata", '{"owner": "ana"}', "--json")))
    assert put["size"] == len(data) and put["etag"] == hashlib.md5(data).hexdigest()
    ok(await wdl(api, deployer, "object", "put", "photos/../escape", "--ns", "media", "--pipe",
           stdin=b"dots"))
    ok(await wdl(api, deployer, "object", "put", "photos/2025/dog.txt", "--ns", "media", "--pipe",
           stdin=b"woof"))

    got = ok(await wdl(api, observer, "object", "get", "photos/2026/cat.bin", "--ns", "media",
                 "--pipe"))
    assert got == data
    ok(await wdl(api, observer, "object", "get", "photos/2025/dog.txt", "--ns", "media",
                 cwd=tmp_path))
    assert (tmp_path / "dog.txt").read_bytes() == b"woof"
    assert ok(await wdl(api, observer, "object", "get", "photos/../escape", "--ns", "media",
                  "--pipe")) == b"dots"

    head = json.loads(ok(await wdl(api, observer, "object", "head", "photos/2026/cat.bin", "--ns",
                             "media", "--json")))
    assert head["httpMetadata"] == {"contentType": "image/x-cat"}
    assert head["customMetadata"] == {"owner": "ana"}

    listed = json.loads(ok(await wdl(api, observer, "object", "list", "photos", "--ns", "media",
                               "--json")))
    assert [o["key"] for o in listed["objects"]] == ["../escape", "2025/dog.txt",
                                                     "2026/cat.bin"]
    grouped = json.loads(ok(await wdl(api, observer, "object", "list", "photos", "--ns", "media",
                                "--delimiter", "/", "--prefix", "20", "--json")))
    assert grouped == {"objects": [], "delimitedPrefixes": ["2025/", "2026/"]}

    # An observer may read but not write; another namespace's token sees no such bucket.
    refused = await wdl(api, observer, "object", "delete", "photos/2025/dog.txt", "--ns", "media")
    assert refused.returncode != 0 and b"forbidden" in refused.stderr
    hidden = await wdl(api, tokens["deployer-other"], "object", "get", "photos/2026/cat.bin",
                 "--ns", "media", "--pipe")
    assert hidden.returncode != 0 and b"namespace_not_found" in hidden.stderr
    empty = json.loads(ok(await wdl(api, tokens["deployer-other"], "object", "list", "photos",
                              "--ns", "other", "--json")))
    assert empty == {"objects": [], "delimitedPrefixes": []}
    missing = await wdl(api, deployer, "object", "list", "nope", "--ns", "media")
    assert missing.returncode != 0 and b"r2_bucket_not_found" in missing.stderr

    ok(await wdl(api, deployer, "object", "delete", "photos/2025/dog.txt", "--ns", "media"))
    gone = await wdl(api, observer, "object", "head", "photos/2025/dog.txt", "--ns", "media")
    assert gone.returncode != 0 and b"r2_object_not_found" in gone.stderr
