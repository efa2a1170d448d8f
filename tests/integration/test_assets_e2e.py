"""Static Assets end to end on the real servers: `wdl deploy` of a project with `assets`,
served by the gateway as Cloudflare serves them (docs/compatibility.md, Static Assets)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import Endpoints
from tests.assets_fixture import BINARY, LARGE, write_project
from tests.integration.test_dataplane_dev import Dev
from tests.platform_stack import Stack, platform_stack

HOST = "site.workers.local"


@pytest.fixture
async def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Stack]:
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        await stack.wdl("ns", "create", "site")
        yield stack


async def deploy(stack: Stack, project: Path, *extra: str) -> dict[str, object]:
    out = await stack.wdl("deploy", str(project), "--ns", "site", "--json", *extra)
    doc: dict[str, object] = json.loads(out)
    return doc


async def get(stack: Stack, path: str, method: str = "GET",
              headers: dict[str, str] | None = None) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.request(method, stack.gateway + path,
                                    headers={"host": HOST, **(headers or {})})


async def test_serving_rules_etags_ranges_and_the_worker(stack: Stack) -> None:
    project = write_project(stack.tmp, "app", {
        "binding": "ASSETS", "not_found_handling": "single-page-application",
        "run_worker_first": ["/api/*", "!/api/docs/*"]})
    result = await deploy(stack, project)
    assets = result["assets"]
    assert isinstance(assets, dict)
    assert assets["files"] == 9 and assets["uploaded"] == 9 and assets["skipped"] == 0

    # Files, with wrangler's content types and html_handling (auto-trailing-slash).
    r = await get(stack, "/app/")
    assert (r.status_code, r.text) == (200, "<h1>home</h1>")
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "public, max-age=0, must-revalidate"
    assert r.headers["x-frame-options"] == "DENY"  # _headers
    r = await get(stack, "/app/about")
    assert (r.status_code, r.text) == (200, "<h1>about</h1>")
    r = await get(stack, "/app/about.html")
    assert (r.status_code, r.headers["location"]) == (307, "/app/about")
    r = await get(stack, "/app/blog")
    assert (r.status_code, r.headers["location"]) == (307, "/app/blog/")
    r = await get(stack, "/app/blog/")
    assert r.text == "<h1>blog</h1>" and r.headers["x-blog"] == ""
    assert r.headers["cache-control"] == "no-cache"  # _headers replaces the default
    r = await get(stack, "/app/index.html")
    assert (r.status_code, r.headers["location"]) == (307, "/app/")
    r = await get(stack, "/app/app.js")
    assert r.headers["content-type"] == "text/javascript; charset=utf-8"

    # _redirects: static, placeholders, a 200 rewrite.
    r = await get(stack, "/app/old?x=1")
    assert (r.status_code, r.headers["location"]) == (301, "/app/about?x=1")
    r = await get(stack, "/app/go/post")
    assert (r.status_code, r.headers["location"]) == (302, "/app/blog/post")
    r = await get(stack, "/app/rewrite")
    assert (r.status_code, r.text) == (200, "<h1>about</h1>")

    # Strong ETags, 304, HEAD, Range.
    r = await get(stack, "/app/logo.bin")
    assert r.content == BINARY and r.headers["etag"].startswith('"')
    etag = r.headers["etag"]
    r = await get(stack, "/app/logo.bin", headers={"if-none-match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    r = await get(stack, "/app/logo.bin", headers={"if-none-match": "W/" + etag})
    assert r.status_code == 304
    r = await get(stack, "/app/logo.bin", "HEAD")
    assert r.status_code == 200 and r.content == b"" and r.headers["etag"] == etag
    r = await get(stack, "/app/logo.bin", headers={"range": "bytes=10-19"})
    assert r.status_code == 206 and r.content == BINARY[10:20]
    assert r.headers["content-range"] == f"bytes 10-19/{len(BINARY)}"
    r = await get(stack, "/app/logo.bin", headers={"range": "bytes=-5"})
    assert r.status_code == 206 and r.content == BINARY[-5:]
    r = await get(stack, "/app/logo.bin", headers={"range": f"bytes={len(BINARY)}-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(BINARY)}"
    r = await get(stack, "/app/large.bin")
    assert r.content == LARGE
    r = await get(stack, "/app/large.bin", headers={"range": "bytes=200000-200009"})
    assert r.status_code == 206 and r.content == LARGE[200000:200010]
    # .assetsignore left it out.
    r = await get(stack, "/app/secret.txt")
    assert "must not" not in r.text

    # run_worker_first patterns, the SPA fallback, the binding.
    r = await get(stack, "/app/api/users")
    assert r.json() == {"api": "/api/users", "method": "GET"}
    r = await get(stack, "/app/api/docs/x")  # negated: the assets (SPA index)
    assert r.text == "<h1>home</h1>"
    r = await get(stack, "/app/some/client/route")
    assert (r.status_code, r.text) == (200, "<h1>home</h1>")
    r = await get(stack, "/app/app.js", "POST")
    assert r.status_code == 405


async def test_worker_gets_what_no_asset_answers_and_env_assets(stack: Stack) -> None:
    project = write_project(stack.tmp, "w", {"binding": "ASSETS"})
    await deploy(stack, project)
    r = await get(stack, "/w/nothing/here")
    assert (r.status_code, r.text) == (200, "worker /nothing/here")
    r = await get(stack, "/w/about")
    assert r.text == "<h1>about</h1>" and "x-from" not in r.headers
    r = await get(stack, "/w/via-binding")
    assert r.text == "binding:200:<h1>about</h1>"
    r = await get(stack, "/w/app.js", "POST")
    assert r.status_code == 405
    # A browser navigation prefers the assets (compatibility date after 2025-04-01):
    # with not_found_handling none, still the worker.
    r = await get(stack, "/w/x", headers={"sec-fetch-mode": "navigate"})
    assert r.text == "worker /x"


async def test_run_worker_first_true_and_404_page(stack: Stack) -> None:
    project = write_project(stack.tmp, "first", {"run_worker_first": True})
    await deploy(stack, project)
    r = await get(stack, "/first/about")
    assert r.text == "worker /about"
    project = write_project(stack.tmp, "pages", {"not_found_handling": "404-page",
                                                 "html_handling": "none"}, main=False)
    await deploy(stack, project)
    r = await get(stack, "/pages/docs/missing")
    assert (r.status_code, r.text) == (404, "<h1>docs 404</h1>")
    r = await get(stack, "/pages/missing")
    assert (r.status_code, r.text) == (404, "<h1>404</h1>")
    r = await get(stack, "/pages/about")  # html_handling none: no .html lookup
    assert r.status_code == 404
    r = await get(stack, "/pages/about.html")
    assert (r.status_code, r.text) == (200, "<h1>about</h1>")


async def test_assets_only_project_and_only_new_files_uploaded(stack: Stack) -> None:
    project = write_project(stack.tmp, "static", {}, main=False)
    first = await deploy(stack, project)
    r = await get(stack, "/static/")
    assert (r.status_code, r.text) == (200, "<h1>home</h1>")
    r = await get(stack, "/static/nope")
    assert (r.status_code, r.content) == (404, b"")
    (project / "public" / "new.txt").write_text("new")
    second = await deploy(stack, project)
    assert first["assets"]["uploaded"] == 9  # type: ignore[index]
    assert second["assets"]["uploaded"] == 1  # type: ignore[index]
    assert second["assets"]["skipped"] == 9  # type: ignore[index]
    r = await get(stack, "/static/new.txt")
    assert (r.text, r.headers["content-type"]) == ("new", "text/plain; charset=utf-8")
    # Versions are immutable: the first one still serves its own files.
    await stack.wdl("promote", "static", str(first["version_id"]), "--ns", "site")
    r = await get(stack, "/static/new.txt")
    assert r.status_code == 404


async def test_limits_are_refused_clearly(stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stack.api, timeout=30,
                                 headers={"authorization": f"Bearer {stack.env['WDL_TOKEN']}"},
                                 ) as api:
        r = await api.put("/v1/namespaces/site/assets/" + "0" * 64,
                          content=b"x" * (25 * 1024 * 1024 + 1))
        assert r.status_code == 413 and r.json()["error"]["code"] == "asset_too_large"
        r = await api.put("/v1/namespaces/site/assets/" + "0" * 64, content=b"x")
        assert r.status_code == 400 and r.json()["error"]["code"] == "digest_mismatch"
        body = {"compatibility_date": "2025-06-01", "assets": {"files": [
            {"path": f"/f{i}", "sha256": "0" * 64, "size": 1} for i in range(20_001)]}}
        r = await api.post("/v1/namespaces/site/workers/lim/versions", json=body)
        assert r.status_code == 413 and r.json()["error"]["code"] == "too_many_assets"
        body = {"compatibility_date": "2025-06-01", "assets": {"files": [
            {"path": "/a", "sha256": "0" * 64, "size": 1}]}}
        r = await api.post("/v1/namespaces/site/workers/lim/versions", json=body)
        assert r.status_code == 409 and r.json()["error"]["code"] == "assets_not_uploaded"
    # The CLI refuses a file over 25 MiB before any upload.
    project = write_project(stack.tmp, "huge", {}, main=False)
    (project / "public" / "huge.bin").write_bytes(b"\0" * (25 * 1024 * 1024 + 1))
    out = await stack.wdl("deploy", str(project), "--ns", "site", ok=False)
    assert "huge.bin" not in out  # printed on stderr; the deploy made nothing
    r = await get(stack, "/huge/")
    assert r.status_code == 404


def test_wdl_dev_serves_assets_the_same_and_keeps_them_across_a_restart(
        dev: Dev, tmp_path: Path) -> None:
    dev.start()
    dev.cli("ns", "create", "site")
    project = write_project(tmp_path, "app", {
        "binding": "ASSETS", "not_found_handling": "single-page-application",
        "run_worker_first": ["/api/*", "/via-binding"]})
    out = json.loads(dev.cli("deploy", str(project), "--ns", "site", "--json"))
    assert out["assets"]["uploaded"] == 9
    assert json.loads(dev.cli("deploy", str(project), "--ns", "site", "--json"))[
        "assets"]["uploaded"] == 0
    r = dev.get(HOST, "/app/about.html")
    assert (r.status_code, r.headers["location"]) == (307, "/app/about")
    assert dev.get(HOST, "/app/api/x").json() == {"api": "/api/x", "method": "GET"}
    assert dev.get(HOST, "/app/deep/link").text == "<h1>home</h1>"
    assert dev.get(HOST, "/app/via-binding").text == "binding:200:<h1>about</h1>"
    assert dev.get(HOST, "/app/large.bin").content == LARGE
    assert dev.interrupt() == 0
    dev.start()
    r = dev.get(HOST, "/app/logo.bin")
    assert r.content == BINARY and r.headers["content-type"] == "application/octet-stream"
    assert dev.interrupt() == 0
