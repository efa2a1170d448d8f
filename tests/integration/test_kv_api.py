"""KV data through the control API and `wdl kv key`: an embedded control plane
(SQLite log, projector, SQLite KV) with the kv_data router, the CLI as a real
subprocess. Namespace tokens see only their own namespace; observers cannot write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest

from projections.runtime import open_backends
from services.api.app import create_app
from services.blobstore import open_blob_store
from services.crypto import load_keyring
from services.kv.factory import open_kv_store
from services.kv.port import KvStore
from services.serving import HttpServer
from services.settings import Settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Api:
    url: str
    admin: str
    kv: KvStore
    tmp: Path

    def client(self, token: str) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"})

    async def wdl_kv(self, token: str, *args: str, ok: bool = True,
                     stdin: bytes | None = None) -> tuple[int, bytes, str]:
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("WDL_")},
               "WDL_CONTROL_URL": self.url, "WDL_TOKEN": token,
               "WDL_CONFIG": str(self.tmp / "none.toml")}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "from cli.kv import app; app()", *args, cwd=ROOT, env=env,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        out, errs = await proc.communicate(stdin)
        assert proc.returncode is not None
        if ok:
            assert proc.returncode == 0, errs.decode()
        # rich wraps long lines: compare messages with whitespace collapsed.
        return proc.returncode, out, " ".join(errs.decode().split())


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    admin = f"adm-{secrets.token_hex(12)}"
    settings = Settings.from_env({"WDL_DATA_DIR": str(tmp_path / "data"),
                                  "WDL_ADMIN_TOKEN": admin}, embedded=True)
    async with contextlib.AsyncExitStack() as stack:
        backends = await stack.enter_async_context(open_backends(settings))
        keyring = load_keyring(dev_key_file=settings.data_dir / "root.keys")
        blobs = await stack.enter_async_context(open_blob_store(settings.blob_url))
        kv = await stack.enter_async_context(open_kv_store(settings.kv_url))
        app = create_app(replace(settings, admin_token=admin), backends, keyring, blobs,
                         run_projector=True, kv=kv)
        server = HttpServer(app, name="api", lifespan="on")
        await server.start()
        stack.push_async_callback(server.stop)
        yield Api(server.url, admin, kv, tmp_path)


async def _setup(api: Api) -> dict[str, str]:
    """Namespaces a and b, each with KV namespace `cache`; tokens per role."""
    async with api.client(api.admin) as c:
        for ns in ("ns-a", "ns-b"):
            assert (await c.post("/v1/namespaces", json={"name": ns})).status_code == 201
            r = await c.post(f"/v1/namespaces/{ns}/kv", json={"name": "cache"})
            assert r.status_code == 201, r.text
        tokens = {}
        for role, ns in (("deployer", "ns-a"), ("observer", "ns-a"), ("deployer", "ns-b")):
            r = await c.post("/v1/tokens", json={"role": role, "namespaces": [ns]})
            assert r.status_code == 201, r.text
            tokens[f"{role}-{ns}"] = r.json()["token"]
    return tokens


async def test_values_keys_and_refusals(api: Api) -> None:
    tokens = await _setup(api)
    base = "/v1/namespaces/ns-a/kv/cache"
    async with api.client(tokens["deployer-ns-a"]) as c:
        r = await c.put(f"{base}/values/dir%2Fk%C3%A9", content=b"\x00\xffbin",
                        params={"expiration_ttl": "600", "metadata": '{"v":"é"}'})
        assert r.status_code == 204, r.text
        got = await c.get(f"{base}/values/dir%2Fk%C3%A9")
        assert got.content == b"\x00\xffbin"
        assert json.loads(httpx.URL("?m=" + got.headers["x-kv-metadata"]).params["m"]) == {
            "v": "é"}
        listed = (await c.get(f"{base}/keys")).json()
        assert [k["name"] for k in listed["keys"]] == ["dir/ké"]
        assert listed["keys"][0]["metadata"] == {"v": "é"} and listed["list_complete"]
        bad = await c.put(f"{base}/values/k", content=b"x", params={"expiration_ttl": "5"})
        assert bad.status_code == 400
        assert "Expiration TTL must be at least 60" in bad.json()["error"]["message"]
        big = await c.put(f"{base}/values/k", content=b"x",
                          headers={"x-kv-metadata": '"' + "m" * 1100 + '"'})
        assert big.status_code == 413
        assert (await c.get(f"{base}/values/nope")).status_code == 404
        missing = await c.get("/v1/namespaces/ns-a/kv/other/keys")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "kv_namespace_not_found"
        assert (await c.delete(f"{base}/values/dir%2Fk%C3%A9")).status_code == 204
        assert (await c.get(f"{base}/keys")).json()["keys"] == []


async def test_namespace_tokens_stay_in_their_namespace(api: Api) -> None:
    tokens = await _setup(api)
    await api.kv.put("ns-a", "cache", "secret", b"of a")
    async with api.client(tokens["deployer-ns-b"]) as c:
        for method, path in (("GET", "/keys"), ("GET", "/values/secret"),
                             ("PUT", "/values/secret"), ("DELETE", "/values/secret")):
            r = await c.request(method, "/v1/namespaces/ns-a/kv/cache" + path, content=b"x")
            assert r.status_code == 404, (method, path, r.text)
            assert r.json()["error"]["code"] == "namespace_not_found"
        # Its own KV namespace of the same name holds nothing of a's.
        assert (await c.get("/v1/namespaces/ns-b/kv/cache/values/secret")).status_code == 404
    async with api.client(tokens["observer-ns-a"]) as c:
        assert (await c.get("/v1/namespaces/ns-a/kv/cache/values/secret")).content == b"of a"
        r = await c.put("/v1/namespaces/ns-a/kv/cache/values/secret", content=b"overwrite")
        assert r.status_code == 403
        assert (await c.delete("/v1/namespaces/ns-a/kv/cache/values/secret")).status_code == 403
    entry = await api.kv.get("ns-a", "cache", "secret")
    assert entry is not None and entry.value == b"of a"


async def test_cli_key_commands(api: Api) -> None:
    tokens = await _setup(api)
    t = tokens["deployer-ns-a"]
    opts = ("--ns", "ns-a", "--namespace-id", "cache")
    await api.wdl_kv(t, "key", "put", "greeting", "héllo", *opts, "--ttl", "3600",
                     "--metadata", '{"lang":"fr"}')
    (api.tmp / "v.bin").write_bytes(b"\x01\x02" * 1000)
    await api.wdl_kv(t, "key", "put", "a/file", *opts, "--path", str(api.tmp / "v.bin"))
    await api.wdl_kv(t, "key", "put", "piped", *opts, "--path", "-", stdin=b"from stdin")
    _, out, _ = await api.wdl_kv(t, "key", "get", "greeting", *opts)
    assert out == "héllo".encode()
    _, out, _ = await api.wdl_kv(t, "key", "get", "greeting", *opts, "--json")
    shown = json.loads(out)
    assert shown["value"] == "héllo" and shown["metadata"] == {"lang": "fr"}
    assert isinstance(shown["expiration"], int)
    _, out, _ = await api.wdl_kv(t, "key", "get", "a/file", "-k", "cache", "--ns", "ns-a")
    assert out == b"\x01\x02" * 1000
    _, out, _ = await api.wdl_kv(t, "key", "get", "piped", "--binding-ns", "cache", "--ns",
                                 "ns-a")
    assert out == b"from stdin"
    _, out, _ = await api.wdl_kv(t, "key", "list", *opts, "--json", "--limit", "2")
    page = json.loads(out)
    assert [k["name"] for k in page["keys"]] == ["a/file", "greeting"]
    assert page["list_complete"] is False
    _, out, _ = await api.wdl_kv(t, "key", "list", *opts, "--json", "--cursor", page["cursor"])
    assert [k["name"] for k in json.loads(out)["keys"]] == ["piped"]
    _, out, _ = await api.wdl_kv(t, "key", "list", *opts, "--prefix", "gr")
    assert "greeting" in out.decode() and "a/file" not in out.decode()
    await api.wdl_kv(t, "key", "delete", "greeting", *opts)
    code, _, errs = await api.wdl_kv(t, "key", "get", "greeting", *opts, ok=False)
    assert code != 0 and "kv_key_not_found" in errs
    code, _, errs = await api.wdl_kv(t, "key", "put", "k", "v", *opts, "--ttl", "1", ok=False)
    assert code == 2 and "Expiration TTL must be at least 60" in errs
    code, _, errs = await api.wdl_kv(tokens["deployer-ns-b"], "key", "get", "piped", *opts,
                                     ok=False)
    assert code != 0 and "namespace_not_found" in errs
