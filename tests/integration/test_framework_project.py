"""A project built by a real framework toolchain deploys with `wdl deploy` as it is.

tests/fixtures/vite_react is a Vite 7 React app with `@cloudflare/vite-plugin` (pinned by
its committed package-lock.json; installed from the npm registry with `npm ci`, cached
under .wdl/ by the lockfile's digest). `npm run build` emits dist/client (the assets) and
dist/vite_react/wrangler.json, and points .wrangler/deploy/config.json at it; `wdl deploy`
of the project directory follows that redirection as `wrangler deploy` does. Then the
React app's pages, its hashed bundle and the Worker's API are served on the real servers,
and answer as the pinned `wrangler dev` of the same build does (which follows the
redirection too), path by path.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from harness.endpoints import ROOT, Endpoints
from tests.assets_parity import NAV, Probe, compare_all, record, wrangler_dev
from tests.npm_fixture import node_modules
from tests.platform_stack import platform_stack

pytestmark = pytest.mark.timeout(900)

FIXTURE = ROOT / "tests" / "fixtures" / "vite_react"
HOST = "vite.framework.example.test"


def build(dest: Path) -> Path:
    project = dest / "vite_react"
    shutil.copytree(FIXTURE, project, ignore=shutil.ignore_patterns(
        "node_modules", "dist", ".wrangler"))
    (project / "node_modules").symlink_to(node_modules(FIXTURE, "vite-react"),
                                           target_is_directory=True)
    done = subprocess.run(["npm", "run", "build"], cwd=project, capture_output=True,
                          text=True, timeout=300, check=False,
                          env={**os.environ, "WRANGLER_SEND_METRICS": "false", "CI": "true"})
    assert done.returncode == 0, f"vite build failed:\n{done.stdout[-3000:]}{done.stderr}"
    return project


async def test_a_vite_react_app_deploys_and_serves_its_pages_and_api(
        services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = await asyncio.to_thread(build, tmp_path)
    client_dir = project / "dist" / "client"
    bundles = sorted((client_dir / "assets").glob("index-*.js"))
    assert len(bundles) == 1 and (project / ".wrangler" / "deploy" / "config.json").is_file()
    bundle = bundles[0]
    probes = [Probe("GET", "/"), Probe("HEAD", "/"), Probe("GET", "/", revalidate=True),
              Probe("GET", "/index.html"), Probe("GET", f"/assets/{bundle.name}"),
              Probe("GET", f"/assets/{bundle.name}", revalidate=True),
              Probe("GET", "/robots.txt"), Probe("GET", "/settings/profile", NAV),
              Probe("GET", "/settings/profile"), Probe("GET", "/api/name"),
              Probe("GET", "/api/shell"), Probe("GET", "/api/missing"),
              Probe("POST", "/api/name", body=b"x"), Probe("GET", "/assets/missing.js")]
    with wrangler_dev(project) as reference:
        expected = await asyncio.to_thread(record, reference.url, HOST, probes)
    async with platform_stack(services, fresh_database, unique_name, tmp_path,
                              monkeypatch) as stack:
        await stack.wdl("ns", "create", "web")
        out = await stack.wdl("deploy", str(project), "--ns", "web")
        assert out.strip()  # the version id
        await stack.wdl("hosts", "claim", HOST, "--ns", "web", "--worker", "vite-react")
        async with httpx.AsyncClient(base_url=stack.gateway, timeout=30,
                                     headers={"host": HOST}) as client:
            page = await client.get("/")
            assert page.status_code == 200, page.text
            assert page.headers["content-type"].startswith("text/html")
            assert page.content == (client_dir / "index.html").read_bytes()
            assert f"/assets/{bundle.name}" in page.text

            js = await client.get(f"/assets/{bundle.name}")
            assert js.status_code == 200
            assert js.headers["content-type"].startswith("text/javascript")
            assert js.content == bundle.read_bytes()
            revalidated = await client.get(f"/assets/{bundle.name}",
                                           headers={"if-none-match": js.headers["etag"]})
            assert revalidated.status_code == 304

            api = await client.get("/api/name")
            assert api.status_code == 200
            assert api.json() == {"name": "Cloudflare", "greeting": "built by vite"}
            shell = await client.get("/api/shell")
            assert (shell.status_code, shell.headers["x-shell"]) == (200, "200")
            assert shell.content == page.content

            # A client-side route is the SPA's shell; robots.txt came from public/.
            route = await client.get("/settings/profile",
                                     headers={"sec-fetch-mode": "navigate",
                                              "accept": "text/html"})
            assert (route.status_code, route.content) == (200, page.content)
            robots = await client.get("/robots.txt")
            assert robots.status_code == 200 and robots.text.startswith("User-agent")
            missing_api = await client.get("/api/missing")
            assert missing_api.status_code == 404
        got = await asyncio.to_thread(record, stack.gateway, HOST, probes)
    differences = compare_all(expected, got, probes)
    assert not differences, "\n".join(map(str, differences))
