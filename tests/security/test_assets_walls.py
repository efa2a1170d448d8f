"""Static Assets walls: a tenant's manifest, paths and rule files against the platform and
the other tenants, on the real servers and on `wdl dev`.

- Another namespace's files: asset blobs are scoped to their namespace (the digest
  covers its name) and an upload leaves an owner marker; a manifest naming a digest
  the namespace did not upload is refused at deploy, "which files are missing"
  answers nothing about other namespaces, and the state service serves a blob only
  as its own namespace's asset (services/assets/manifest.py).
- Paths: manifest paths and `_redirects` targets are tenant strings; none reaches a
  filesystem, none leaves the manifest (`..` is refused or resolved inside it).
- `_headers`: bounded (1 MiB, 100 rules); its Set-Cookie passes the same cookie wall
  as a worker's responses (no cookie for the platform domain).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.assets import scoped_digest
from tests.security.rig import ATTACKER, VICTIM, Actor, Walls

pytestmark = pytest.mark.security

SECRET = b"victim's private report: q3 numbers\n"


def site(actor: Actor, name: str, files: dict[str, bytes | str],
         assets: dict[str, Any] | None = None) -> Path:
    """An assets-only project under the actor's workdir."""
    root = actor.workdir / f"{name}-site"
    public = root / "public"
    public.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        target = public / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content)
    (root / "wrangler.json").write_text(json.dumps({
        "name": name, "compatibility_date": "2025-06-01",
        "assets": {"directory": "./public", **(assets or {})}}))
    return root


def api(walls: Walls, actor: Actor) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=walls.api, timeout=60, headers={
        "authorization": f"Bearer {actor.env['WDL_TOKEN']}"})


async def victim_site(walls: Walls) -> str:
    victim = Actor("victim-admin", walls.admin.env, walls.admin.workdir, VICTIM)
    if not walls.extra.get("victim_site"):
        await victim.deploy(site(victim, "files", {"report.txt": SECRET, "index.html": "hi"}))
        walls.extra["victim_site"] = True
    r = await walls.get(walls.host(VICTIM), "/files/report.txt")
    assert r.content == SECRET
    return scoped_digest(VICTIM, SECRET)


async def test_a_manifest_naming_another_namespaces_digest_is_refused(walls: Walls) -> None:
    stolen = await victim_site(walls)
    async with api(walls, walls.attacker) as client:
        # "Which of these do I lack?": the victim's file is missing for the attacker.
        r = await client.post(f"/v1/namespaces/{ATTACKER}/assets/missing",
                              json={"digests": [stolen]})
        assert r.status_code == 200 and r.json()["missing"] == [stolen]
        # A deploy naming it: refused, nothing written.
        r = await client.post(f"/v1/namespaces/{ATTACKER}/workers/thief/versions", json={
            "compatibility_date": "2025-06-01",
            "assets": {"files": [{"path": "/loot.txt", "sha256": stolen,
                                  "size": len(SECRET)}]}})
        assert r.status_code == 409, r.text
        assert r.json()["error"]["code"] == "assets_not_uploaded"
        # Uploading other bytes under the victim's digest: they hash as the attacker's.
        r = await client.put(f"/v1/namespaces/{ATTACKER}/assets/{stolen}", content=b"x")
        assert r.status_code == 400 and r.json()["error"]["code"] == "digest_mismatch"
        # The victim's own upload route: not the attacker's namespace.
        r = await client.put(f"/v1/namespaces/{VICTIM}/assets/{stolen}", content=SECRET)
        assert r.status_code in (403, 404)
        # A module forging an owner marker of the attacker for the victim's digest.
        marker = b"wdl-asset-owner/1\x00" + ATTACKER.encode() + b"\x00" + stolen.encode()
        r = await client.post(f"/v1/namespaces/{ATTACKER}/workers/forger/versions", json={
            "main_module": "index.js", "compatibility_date": "2025-06-01", "modules": [
                {"name": "index.js", "content_b64": base64.b64encode(
                    b"export default {fetch(){return new Response('x')}}").decode()},
                {"name": "m.bin", "type": "data",
                 "content_b64": base64.b64encode(marker).decode()}]})
        assert r.status_code == 400, r.text
        r = await client.post(f"/v1/namespaces/{ATTACKER}/assets/missing",
                              json={"digests": [stolen]})
        assert r.json()["missing"] == [stolen]
    r = await walls.attack("thief", "/loot.txt")
    assert SECRET not in r.content and r.status_code == 404
    await walls.assert_victim_intact()


async def test_the_state_service_serves_a_blob_only_as_its_namespaces_asset(
        walls: Walls) -> None:
    # The last line, behind the internal token: even a manifest that named the victim's
    # digest (the fold never accepts one) would get a 404 for the attacker's namespace.
    # On `wdl dev` the state service has no address of its own to ask (in-process).
    stolen = await victim_site(walls)
    if walls.kind == "dev":
        assert "state" not in walls.internals
        return
    headers = {"x-wdl-internal-token": walls.internal_token}
    async with httpx.AsyncClient(base_url=walls.internals["state"], timeout=30) as client:
        r = await client.get("/assets/blob", params={"ns": ATTACKER, "digest": stolen},
                             headers=headers)
        assert r.status_code == 404 and SECRET not in r.content
        r = await client.get("/assets/blob", params={"ns": VICTIM, "digest": stolen},
                             headers=headers)
        assert r.content == SECRET  # the victim's own
        r = await client.get("/assets/blob", params={"ns": VICTIM, "digest": stolen})
        assert r.status_code == 401  # no token, nothing


@pytest.mark.parametrize("path", ["/../../etc/passwd", "/a/../b.txt", "/./x", "//x",
                                  "/a\\..\\b", "/a\x00b", "relative.txt", "/x/"])
async def test_manifest_paths_never_leave_the_manifest(walls: Walls, path: str) -> None:
    attacker = walls.attacker
    await attacker.deploy(site(attacker, "plain", {"index.html": "ok"}))
    digest = scoped_digest(ATTACKER, b"ok")
    async with api(walls, attacker) as client:
        r = await client.post(f"/v1/namespaces/{ATTACKER}/workers/paths/versions", json={
            "compatibility_date": "2025-06-01",
            "assets": {"files": [{"path": path, "sha256": digest, "size": 2}]}})
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "invalid_asset_path"


async def test_request_paths_and_redirect_rewrites_stay_inside_the_manifest(
        walls: Walls) -> None:
    attacker = walls.attacker
    await attacker.deploy(site(attacker, "trav", {
        "index.html": "home",
        "_redirects": "/p /../../../../etc/passwd 200\n/h /__wdl/healthz 200\n"
                      "/x https://evil.example/%0d%0aSet-Cookie:%20a=b 302\n"
                      "/y /ok%0d%0aX-Injected:%201 302\n"}))
    for path in ("/..%2f..%2f..%2fetc/passwd", "/%2e%2e/%2e%2e/etc/passwd", "/p", "/h",
                 "/..%5c..%5cetc%5cpasswd"):
        r = await walls.attack("trav", path)
        assert r.status_code in (404, 307), (path, r.status_code)
        assert b"root:" not in r.content and b'"ok"' not in r.content, path
    for path in ("/x", "/y"):
        r = await walls.attack("trav", path)
        assert r.status_code == 302
        assert "set-cookie" not in r.headers and "x-injected" not in r.headers
        assert "\r" not in r.headers["location"] and "\n" not in r.headers["location"]
    await walls.assert_victim_intact()


async def test_headers_file_is_bounded_and_cannot_plant_platform_cookies(
        walls: Walls) -> None:
    attacker = walls.attacker
    huge = "".join(f"/r{i}\n  X-N: {i}\n" for i in range(60_000))  # ~1 MiB+ of rules
    r = await attacker.deploy(site(attacker, "hdr", {"index.html": "x", "_headers": huge}),
                              ok=False)
    assert r.code != 0 and "assets_rules_too_large" in r.text
    many = "".join(f"/r{i}\n  X-N: {i}\n" for i in range(5_000))  # under 1 MiB
    r = await attacker.deploy(site(attacker, "hdr2", {"index.html": "x", "r4999": "y",
                                                      "r5": "z", "_headers": many}))
    warnings = r.json()["assets"]["warnings"]
    assert any("at most 100 rules" in w for w in warnings)
    got = await walls.attack("hdr2", "/r5")
    assert got.headers.get("x-n") == "5"
    got = await walls.attack("hdr2", "/r4999")
    assert "x-n" not in got.headers  # past the 100 rules: skipped, as on Cloudflare
    await attacker.deploy(site(attacker, "cookie", {"index.html": "x", "_headers": (
        "/*\n  Set-Cookie: plant=1; Domain=workers.local; Path=/\n"
        "/\n  Set-Cookie: own=1; Path=/\n")}))
    got = await walls.attack("cookie", "/")
    cookies = got.headers.get_list("set-cookie")
    assert cookies == ["own=1; Path=/"], cookies
    await walls.assert_victim_intact()
