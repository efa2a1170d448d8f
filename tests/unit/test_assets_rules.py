"""Static Assets' pure parts: `_headers` / `_redirects` parsing (Cloudflare's syntax and
limits), manifest paths, content types, namespace-scoped digests, and the event field."""

from __future__ import annotations

import msgspec
import pytest

from eventlog.errors import InvalidEvent
from eventlog.events.assets import AssetsConfig, VersionAssets
from services.assets import (
    AssetError,
    AssetFile,
    check_files,
    check_path,
    content_type,
    parse_headers,
    parse_redirects,
    scoped_bytes,
    scoped_content,
    scoped_digest,
)

pytestmark = pytest.mark.unit


def test_headers_rules_set_unset_join_and_skip_bad_lines() -> None:
    rules, warnings = parse_headers(
        "No-Path: here\n# comment\n/*\n  X-Frame-Options: DENY\n  ! Content-Type\n"
        "/a/:name\n  X-A: 1\n  x-a: 2\n  bad line\n/empty\n")
    assert rules == [
        {"path": "/*", "set": {"x-frame-options": "DENY"}, "unset": ["content-type"]},
        {"path": "/a/:name", "set": {"x-a": "1, 2"}, "unset": []},
    ]
    assert len(warnings) == 3 and "path should come before header" in warnings[0]
    assert "no headers specified" in warnings[-1]


def test_headers_limits() -> None:
    rules, warnings = parse_headers("".join(f"/r{i}\n  X: {i}\n" for i in range(150)))
    assert len(rules) == 100 and any("at most 100 rules" in w for w in warnings)
    rules, warnings = parse_headers("/x\n  X: " + "a" * 2001 + "\n")
    assert rules == [] and any("longer than 2000" in w for w in warnings)
    with pytest.raises(AssetError) as exc:
        parse_headers("/x\n  X: y\n" * 200_000)
    assert (exc.value.status, exc.value.code) == (413, "assets_rules_too_large")


def test_redirects_static_dynamic_and_refusals() -> None:
    parsed, warnings = parse_redirects(
        "/a /b 301\n/x/* /y/:splat\n/c /d\n/bad\n/e https://ex.com/q?x=1 307\n"
        "/f https://ex.com 200\n/a /dup\n/g /h 404\n/loop/* /index.html\n/p /../../etc 200\n",
        "auto-trailing-slash")
    assert parsed["static"] == {"/a": {"to": "/b", "status": 301, "line": 1}}
    assert parsed["dynamic"] == [
        {"from": "/x/*", "to": "/y/:splat", "status": 302},
        {"from": "/c", "to": "/d", "status": 302},  # after a splat: in order
        {"from": "/e", "to": "https://ex.com/q?x=1", "status": 307},
        {"from": "/p", "to": "/etc", "status": 200},  # dot segments resolved
    ]
    text = "\n".join(warnings)
    for needle in ("2 or 3", "proxy (200)", "duplicate", "valid status codes",
                   "infinite loop"):
        assert needle in text


def test_redirect_targets_cannot_carry_line_breaks() -> None:
    parsed, _ = parse_redirects("/x https://evil.example/%0d%0aSet-Cookie:a 302\n"
                                "/y /ok\rX-Injected:1 302\n", "none")
    for rule in [*parsed["static"].values(), *parsed["dynamic"]]:
        assert "\r" not in rule["to"] and "\n" not in rule["to"]


@pytest.mark.parametrize("path", ["/../x", "/a/./b", "//x", "/a\\b", "/a\x00", "x", "/a/",
                                  "/" + "a" * 1024])
def test_bad_manifest_paths(path: str) -> None:
    with pytest.raises(AssetError) as exc:
        check_path("p", path)
    assert exc.value.code == "invalid_asset_path"


def test_file_limits() -> None:
    with pytest.raises(AssetError) as exc:
        check_files([AssetFile("/big", "0" * 64, 25 * 1024 * 1024 + 1)])
    assert (exc.value.status, exc.value.code) == (413, "asset_too_large")
    with pytest.raises(AssetError) as exc:
        check_files([AssetFile(f"/f{i}", "0" * 64, 1) for i in range(20_001)])
    assert exc.value.code == "too_many_assets"


def test_content_types_as_wrangler() -> None:
    assert content_type("/a.html") == "text/html; charset=utf-8"
    assert content_type("/a.js") == "text/javascript; charset=utf-8"
    assert content_type("/a.json") == "application/json"
    assert content_type("/a.png") == "image/png"
    assert content_type("/a.woff2") == "font/woff2"


def test_scoped_blobs_belong_to_one_namespace() -> None:
    blob = scoped_bytes("victim", b"secret")
    assert scoped_content("victim", blob) == b"secret"
    assert scoped_content("attacker", blob) is None
    assert scoped_content("victi", blob) is None  # a prefix of the name is not the name
    assert scoped_digest("a", b"x") != scoped_digest("b", b"x")


def test_event_field_rules_and_old_records() -> None:
    ref = VersionAssets(manifest_sha256="0" * 64, manifest_size=2, files=1,
                        config=AssetsConfig(binding="ASSETS", worker_first=("/api/*",)))
    ref.validate(has_worker=True)
    with pytest.raises(InvalidEvent):
        ref.validate(has_worker=False)  # no worker to bind or run first
    with pytest.raises(InvalidEvent):
        VersionAssets(manifest_sha256="0" * 64, manifest_size=2, files=1, config=AssetsConfig(
            worker_first=("api/*",))).validate(has_worker=True)
    decoded = msgspec.json.decode(b'{"manifest_sha256":"' + b"0" * 64 +
                                  b'","manifest_size":2,"files":1}', type=VersionAssets)
    assert decoded.config == AssetsConfig()
