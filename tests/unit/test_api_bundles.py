"""Bundle manifests: canonical bytes, digests, structure rules and limits."""

from __future__ import annotations

import hashlib
import json
import re

import pytest

from services.api.versions import new_version_id
from services.bundles import (
    BundleError,
    BundleLimits,
    Module,
    build_bundle,
    guess_module_type,
    parse_manifest,
)

JS = b"export default { fetch() { return new Response('x') } }"


def test_manifest_is_canonical_and_addresses_every_module() -> None:
    modules = [Module("index.js", "esm", JS), Module("data/words.txt", "text", b"hello")]
    bundle = build_bundle("index.js", modules, BundleLimits())
    assert bundle.manifest == build_bundle("index.js", list(modules), BundleLimits()).manifest
    doc = json.loads(bundle.manifest)
    assert doc == {"main_module": "index.js", "modules": [
        {"name": "index.js", "sha256": hashlib.sha256(JS).hexdigest(), "size": len(JS),
         "type": "esm"},
        {"name": "data/words.txt", "sha256": hashlib.sha256(b"hello").hexdigest(), "size": 5,
         "type": "text"}]}
    assert b" " not in bundle.manifest.replace(b"export default", b"")
    assert bundle.sha256 == hashlib.sha256(bundle.manifest).hexdigest()
    assert bundle.size == len(bundle.manifest)
    main, refs = parse_manifest(bundle.manifest)
    assert main == "index.js" and refs == list(bundle.module_refs())


@pytest.mark.parametrize(("main", "modules", "field", "too_large"), [
    ("index.js", [], "modules", False),
    ("other.js", [Module("index.js", "esm", JS)], "main_module", False),
    ("index.js", [Module("index.js", "text", JS)], "main_module", False),
    ("index.js", [Module("index.js", "esm", JS), Module("index.js", "esm", JS)],
     "modules[1].name", False),
    ("index.js", [Module("index.js", "esm", JS), Module("../up.js", "esm", JS)],
     "modules[1].name", False),
    ("index.js", [Module("index.js", "esm", JS), Module("/abs.js", "esm", JS)],
     "modules[1].name", False),
    ("index.js", [Module("index.js", "esm", JS), Module("a//b.js", "esm", JS)],
     "modules[1].name", False),
    ("index.js", [Module("index.js", "esm", JS), Module("a\\b.js", "esm", JS)],
     "modules[1].name", False),
    ("index.js", [Module("index.js", "esm", JS), Module("x.js", "rust", JS)],
     "modules[1].type", False),
    ("index.js", [Module("index.js", "esm", JS), Module("big.bin", "data", b"x" * 101)],
     "modules[1].content", True),
])
def test_structure_rules(main: str, modules: list[Module], field: str, too_large: bool) -> None:
    with pytest.raises(BundleError) as info:
        build_bundle(main, modules, BundleLimits(max_module_bytes=100, max_bundle_bytes=150))
    assert info.value.field == field
    assert info.value.too_large is too_large


def test_total_size_and_count_limits() -> None:
    limits = BundleLimits(max_modules=2, max_module_bytes=100, max_bundle_bytes=150)
    with pytest.raises(BundleError) as info:
        build_bundle("index.js", [Module("index.js", "esm", b"a" * 80),
                                  Module("b.txt", "text", b"b" * 80)], limits)
    assert info.value.too_large and info.value.field == "modules"
    with pytest.raises(BundleError) as info:
        build_bundle("index.js", [Module(f"{i}.js", "esm", b"") for i in range(3)], limits)
    assert info.value.too_large


def test_module_types_follow_extensions() -> None:
    assert [guess_module_type(n) for n in ("a.js", "a.mjs", "a.cjs", "a.wasm", "a.json",
                                           "a.txt", "a.py", "a.bin")] == [
        "esm", "esm", "commonjs", "wasm", "json", "text", "python", "data"]


def test_version_ids_are_time_ordered_and_valid_ids() -> None:
    ids = [new_version_id() for _ in range(500)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 26 and re.fullmatch(r"[0-9a-z]+", i) for i in ids)
