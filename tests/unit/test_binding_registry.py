"""The binding registry (eventlog/bindings/) is the one place a binding kind is known.

- each platform kind's JavaScript parts exist where its spec says;
- no runtime module outside the registry decides by a kind's name (a comparison with
  it, or a table keyed by kinds), in Python or in the system workers' JavaScript;
- the wrangler keys the kinds read are not also refused;
- docs/adding-a-binding.md describes every field of a spec.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from cli.wrangler import UNSUPPORTED_KEYS
from eventlog.bindings import KINDS, SPECS, BindingSpec, read_wrangler, wrangler_keys
from services.dataplane import binding_index
from services.dataplane.config import gateway_sources

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
WORKERD = ROOT / "workerd"
PLATFORM = {k for k, s in SPECS.items() if s.props is not None}
# Modules that may name a kind: a kind's own backend, and the few rules about one.
ALLOWED = {
    # The data service is the KV and R2 backends (routes and metrics per backend).
    "services/data/service.py",
    "services/data/binding_metrics.py",
    # The resource API of KV namespaces and R2 buckets: its own aggregates, by name.
    "services/api/routes/resources.py",
    # The D1 and queue CLIs provision their kind's resources at deploy.
    "cli/d1.py",
    "cli/queues.py",
    # `wdl init` templates: text of a wrangler config, per resource kind.
    "cli/scaffold.py",
    # A dynamic Worker's globalOutbound may only be a service binding (Cloudflare's rule).
    "workerd/tenant/loader.js",
}


def _python_sources() -> list[Path]:
    out = []
    for package in ("eventlog", "projections", "services", "cli"):
        out += [p for p in sorted((ROOT / package).rglob("*.py"))
                if "eventlog/bindings" not in p.as_posix()]
    return out


def _is_kind_expr(node: ast.expr) -> bool:
    if isinstance(node, ast.Name):
        return "kind" in node.id
    if isinstance(node, ast.Attribute):
        return "kind" in node.attr
    if isinstance(node, ast.Subscript):
        key = node.slice
        return isinstance(key, ast.Constant) and key.value == "kind"
    return False


def _kind_constants(node: ast.expr) -> set[str]:
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    return {i.value for i in items if isinstance(i, ast.Constant) and i.value in PLATFORM}


def _namings(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            if any(_is_kind_expr(s) for s in sides):
                named = set().union(*(_kind_constants(s) for s in sides))
                if named:
                    found.append(f"line {node.lineno}: compares a kind with {sorted(named)}")
        elif isinstance(node, ast.Dict):
            keys = {k.value for k in node.keys
                    if isinstance(k, ast.Constant) and k.value in PLATFORM}
            if len(keys) >= 2:
                found.append(f"line {node.lineno}: a table keyed by kinds {sorted(keys)}")
    return found


def test_no_python_module_outside_the_registry_decides_by_a_kinds_name() -> None:
    broken = []
    for path in _python_sources():
        rel = path.relative_to(ROOT).as_posix()
        if rel in ALLOWED:
            continue
        broken += [f"{rel} {n}" for n in _namings(ast.parse(path.read_text()))]
    assert not broken, "name kinds only in eventlog/bindings/:\n" + "\n".join(broken)


def test_the_python_check_finds_namings() -> None:
    source = ('if b.kind == "kv": pass\nx = kind in ("r2", "d1")\n'
              'LABELS = {"kv": "KV namespace", "queue": "queue"}\nif kind == "json": pass\n')
    assert len(_namings(ast.parse(source))) == 3


_KIND_ALT = "|".join(sorted(PLATFORM))
# A binding's kind (`kind`, `b.kind`, `binding.kind`), not other things' (a trace event's).
_JS_COMPARE = re.compile(
    rf"""(?:(?<![.\w])|\b(?:b|binding|known)\.)kind\s*[!=]==?\s*["'`]({_KIND_ALT})["'`]""")
_JS_KEY = re.compile(rf"""(?:^|[{{,\s])["']?({_KIND_ALT})["']?\s*:""")


def _js_namings(text: str) -> list[str]:
    found = [f"compares a kind with {m.group(1)!r}" for m in _JS_COMPARE.finditer(text)]
    for literal in re.findall(r"\{[^{}]*\}", text):
        keys = set(_JS_KEY.findall(literal))
        if len(keys) >= 2:
            found.append(f"a table keyed by kinds {sorted(keys)}")
    return found


def test_no_system_worker_decides_by_a_kinds_name() -> None:
    broken = []
    for folder in ("gateway", "tenant", "objects"):
        for path in sorted((WORKERD / folder).glob("*.js")):
            if path.relative_to(ROOT).as_posix() in ALLOWED:
                continue
            broken += [f"{path.relative_to(ROOT)}: {n}" for n in _js_namings(path.read_text())]
    assert not broken, "\n".join(broken)


def test_the_javascript_check_finds_namings() -> None:
    assert _js_namings('if (b.kind === "workflow") x();')
    assert _js_namings('const E = { kv: "WdlKv", r2: "WdlR2" };')
    assert not _js_namings('if (kind === "json") x(); const o = { kv: 1 };')
    assert not _js_namings('if (event.kind === "queue") x();')


@pytest.mark.parametrize("kind", sorted(PLATFORM))
def test_each_platform_kind_has_its_javascript_parts(kind: str) -> None:
    spec = SPECS[kind]
    gateway = (WORKERD / "gateway" / f"{spec.gateway_module or spec.module}.js").read_text()
    assert re.search(rf"export class {spec.entrypoint}\b", gateway)
    tenant = (WORKERD / "tenant" / f"{spec.module}.js").read_text()
    assert re.search(r"export function wrap\(", tenant)
    if spec.info:
        assert "export function info(" in gateway
    if spec.main_export:
        assert "export function mainExport(" in tenant


def test_the_generated_indexes_reach_the_gateway() -> None:
    names = {m.name for m in gateway_sources()}
    assert {"binding_entrypoints.js", "binding_kinds.js", "tenant/bindings.js",
            "shim_sources.js"} <= names
    tenant = binding_index.tenant_module()
    for kind in PLATFORM:
        assert f'"{kind}": wrap' in tenant


def test_wrangler_keys_the_kinds_read_are_not_refused() -> None:
    assert not wrangler_keys() & set(UNSUPPORTED_KEYS)


def test_a_config_reads_into_every_kind_that_has_a_wrangler_key() -> None:
    doc = {"name": "w", "kv_namespaces": [{"binding": "KV", "id": "cache"}],
           "r2_buckets": [{"binding": "B", "bucket_name": "files"}],
           "d1_databases": [{"binding": "DB", "database_name": "main"}],
           "services": [{"binding": "S", "service": "other"}],
           "workflows": [{"binding": "F", "name": "flow", "class_name": "Flow"}],
           "queues": {"producers": [{"binding": "Q", "queue": "jobs"}]},
           "durable_objects": {"bindings": [{"name": "O", "class_name": "C"}]},
           "migrations": [{"tag": "v1", "new_sqlite_classes": ["C"]}],
           "worker_loaders": [{"binding": "L"}],
           "version_metadata": {"binding": "META"},
           "ratelimits": [{"name": "RL", "namespace_id": "1",
                           "simple": {"limit": 5, "period": 10}}],
           "assets": {"directory": "./public", "binding": "ASSETS"},
           "dispatch_namespaces": [{"binding": "D", "namespace": "users",
                                    "outbound": {"service": "out", "parameters": ["p"]}}],
           "hyperdrive": [{"binding": "HD", "id": "0123456789abcdef0123456789abcdef"}]}
    read = {b["kind"] for b in read_wrangler(doc, "wrangler.json")}
    assert read == {k for k, s in SPECS.items() if s.parse is not None}
    assert KINDS[: len(read)] == tuple(k for k in SPECS if SPECS[k].parse is not None)


def test_the_recipe_describes_every_field_of_a_spec() -> None:
    recipe = (ROOT / "docs" / "adding-a-binding.md").read_text()
    missing = [f.name for f in dataclasses.fields(BindingSpec) if f"`{f.name}`" not in recipe]
    assert not missing, f"docs/adding-a-binding.md does not describe {missing}"
