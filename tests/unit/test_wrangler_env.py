"""wrangler environments, the table of config keys, and route patterns (pure logic).

The pinned wrangler's shipped config schema is the reference: every key it knows is
classified in cli/wrangler_keys.py, and its "not automatically inherited" keys are the
table's non-inheritable ones."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.wrangler import UNSUPPORTED_KEYS, ProjectError, read_project
from cli.wrangler_keys import KEYS, EnvError, keys_of, select_env, warnings_for
from services.wrangler_routes import RouteClaim, RouteError, read_routes, translate

SCHEMA = Path(__file__).resolve().parents[2] / "workerd/node_modules/wrangler/config-schema.json"


def _schema() -> dict[str, Any]:
    definitions: dict[str, Any] = json.loads(SCHEMA.read_text())["definitions"]
    return definitions


def test_every_key_of_the_pinned_wranglers_schema_is_classified() -> None:
    defs = _schema()
    top = set(defs["RawConfig"]["properties"])
    env = set(defs["RawEnvironment"]["properties"])
    assert top | env, "the schema lists no keys"
    missing = sorted((top | env) - set(KEYS))
    assert not missing, f"classify these wrangler keys in cli/wrangler_keys.py: {missing}"


def test_inheritance_follows_the_schema() -> None:
    defs = _schema()
    top, env = defs["RawConfig"]["properties"], defs["RawEnvironment"]["properties"]
    for key in set(top) - set(env):
        assert KEYS[key].inheritance == "top_only", key
    for key, spec in top.items():
        if "not automatically inherited" in (spec.get("description") or ""):
            assert KEYS[key].inheritance == "not_inheritable", key
    for key in ("main", "compatibility_date", "compatibility_flags", "build", "no_bundle",
                "workers_dev", "route", "routes", "triggers", "migrations", "minify"):
        assert KEYS[key].inheritance == "inheritable", key
    for key in ("vars", "define", "durable_objects", "kv_namespaces", "r2_buckets",
                "d1_databases", "services", "queues", "workflows", "tail_consumers",
                "version_metadata", "ratelimits"):
        assert KEYS[key].inheritance == "not_inheritable", key


def test_refused_keys_are_the_ones_deploy_refuses() -> None:
    assert set(keys_of("refused")) == set(UNSUPPORTED_KEYS)
    for key in keys_of("refused") + keys_of("warned"):
        assert KEYS[key].note, f"{key}: say why"


DOC = {
    "name": "shop", "main": "src/index.js", "compatibility_date": "2025-01-01",
    "compatibility_flags": ["nodejs_compat"], "workers_dev": False,
    "routes": ["shop.example.test/*"], "vars": {"MODE": "top"},
    "kv_namespaces": [{"binding": "KV", "id": "kv-top"}], "keep_vars": True,
    "env": {
        "staging": {"vars": {"MODE": "staging"}, "routes": ["staging.example.test/*"]},
        "production": {"name": "shop-live", "main": "src/prod.js", "keep_vars": True,
                       "kv_namespaces": [{"binding": "KV", "id": "kv-prod"}]},
    },
}


def test_env_inherits_and_names_the_worker() -> None:
    merged, warnings = select_env(DOC, "staging", "wrangler.toml")
    assert merged["name"] == "shop-staging"
    assert merged["main"] == "src/index.js"
    assert merged["compatibility_flags"] == ["nodejs_compat"]
    assert merged["workers_dev"] is False
    assert merged["vars"] == {"MODE": "staging"}
    assert merged["routes"] == ["staging.example.test/*"]  # the env's replace the top's
    assert "kv_namespaces" not in merged  # not inherited
    assert merged["keep_vars"] is True  # top-only keys are read from the top level
    assert "env" not in merged
    assert any("`kv_namespaces` exists at the top level, but not on `env.staging`" in w
               for w in warnings), warnings


def test_env_sets_its_own_name_and_top_only_keys_are_named() -> None:
    merged, warnings = select_env(DOC, "production", "wrangler.toml")
    assert merged["name"] == "shop-live"
    assert merged["main"] == "src/prod.js"
    assert merged["kv_namespaces"] == [{"binding": "KV", "id": "kv-prod"}]
    assert merged["routes"] == ["shop.example.test/*"]  # inherited
    assert "vars" not in merged
    assert any("`env.production.keep_vars` is ignored" in w for w in warnings)
    assert any("`vars` exists at the top level" in w for w in warnings)


def test_unknown_env_is_refused_listing_the_defined_ones() -> None:
    with pytest.raises(EnvError, match=r"no environment 'stagin'.*production, staging"):
        select_env(DOC, "stagin", "wrangler.toml")
    with pytest.raises(EnvError, match="defines none"):
        select_env({"name": "x"}, "staging", "wrangler.toml")
    with pytest.raises(EnvError, match="table of environments"):
        select_env({"name": "x", "env": {"a": 1}}, "a", "wrangler.toml")


def test_no_env_is_the_top_level() -> None:
    merged, warnings = select_env(DOC, None, "wrangler.toml")
    assert merged["name"] == "shop" and "env" not in merged and warnings == []


def test_warnings_name_every_key_without_effect() -> None:
    doc = {"name": "x", "placement": {"mode": "smart"}, "observability": {"enabled": True},
           "minify": True, "upload_source_maps": True, "mystery": 1, "workers_dev": True}
    bundled = warnings_for(doc, "wrangler.toml", bundled=True)
    assert any("`placement`" in w for w in bundled)
    assert any("`observability`" in w for w in bundled)
    assert any("`upload_source_maps`" in w for w in bundled)
    assert any("`mystery`" in w for w in bundled)
    assert not any("`minify`" in w for w in bundled)  # wrangler's bundling applies it
    assert not any("`workers_dev`" in w or "`name`" in w for w in bundled)
    as_is = warnings_for(doc, "wrangler.toml", bundled=False)
    assert any("`minify`" in w for w in as_is)


def test_read_project_with_env(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src/index.js").write_text("export default {}")
    (tmp_path / "wrangler.toml").write_text(
        'name = "shop"\nmain = "src/index.js"\ncompatibility_date = "2025-01-01"\n'
        'workers_dev = false\nroute = { pattern = "shop.example.test", custom_domain = true }\n'
        '[[d1_databases]]\nbinding = "DB"\ndatabase_name = "shop"\ndatabase_id = "local-db"\n'
        '[env.staging]\n[[env.staging.d1_databases]]\nbinding = "DB"\n'
        'database_name = "shop-staging"\ndatabase_id = "local-db"\n')
    project = read_project(tmp_path, "staging")
    assert project.name == "shop-staging" and project.env == "staging"
    assert project.workers_dev is False
    assert project.routes == [{"pattern": "shop.example.test", "custom_domain": True}]
    assert [b["target"] for b in project.bindings if b["kind"] == "d1"] == ["shop-staging"]
    with pytest.raises(ProjectError, match="no environment 'prod'"):
        read_project(tmp_path, "prod")


@pytest.mark.parametrize(("entry", "claim"), [
    ("shop.example.test/*", RouteClaim("shop.example.test", "prefix", "shop.example.test/*")),
    ("shop.example.test/api*", RouteClaim("shop.example.test/api", "prefix",
                                          "shop.example.test/api*")),
    ("shop.example.test/api/*", RouteClaim("shop.example.test/api/", "prefix",
                                           "shop.example.test/api/*")),
    ("shop.example.test/about", RouteClaim("shop.example.test/about", "exact",
                                           "shop.example.test/about")),
    ("shop.example.test", RouteClaim("shop.example.test/", "exact", "shop.example.test")),
    ({"pattern": "shop.example.test/*", "zone_name": "example.test"},
     RouteClaim("shop.example.test", "prefix", "shop.example.test/*")),
    ({"pattern": "shop.example.test/*", "zone_id": "abc"},
     RouteClaim("shop.example.test", "prefix", "shop.example.test/*")),
    ({"pattern": "shop.example.test", "custom_domain": True},
     RouteClaim("shop.example.test", "prefix", "shop.example.test")),
])
def test_route_patterns_as_cloudflare_matches_them(entry: object, claim: RouteClaim) -> None:
    assert translate(entry) == claim


@pytest.mark.parametrize("entry", [
    "*", "*/*", "*.", "*.example.test/*", "shop.*.test/*", "https://shop.example.test/*",
    "//shop.example.test/*", "shop.example.test:8443/*", "shop.example.test/a/../b*",
    "shop.example.test/./a", "shop.example.test//a", "shop.example.test/a*b",
    "shop.example.test/?q=1", "shop.example.test/#x", "shop.example.test/é*", "",
    " shop.example.test/*", "shop.example.test/\n", "shop.example.test/a\\b",
    {"pattern": "shop.example.test/*", "zone_name": "other.test"},
    {"pattern": "shop.example.test/*", "custom_domain": True},
    {"pattern": "shop.example.test", "custom_domain": "yes"},
    {"pattern": "shop.example.test", "zone": "x"}, {"zone_name": "example.test"}, 42,
])
def test_odd_route_patterns_are_refused(entry: object) -> None:
    with pytest.raises(RouteError):
        translate(entry)


def test_route_and_routes_are_exclusive() -> None:
    with pytest.raises(RouteError, match="exclusive"):
        read_routes({"route": "a.example.test/*", "routes": []}, "wrangler.toml")
    assert read_routes({"route": "a.example.test/*"}, "w")[0].pattern == "a.example.test"


def test_a_framework_builds_config_deploys_without_warnings() -> None:
    # What @cloudflare/vite-plugin 1.13.0 writes to dist/<worker>/wrangler.json (trimmed).
    built = {"configPath": "/p/wrangler.jsonc", "userConfigPath": "/p/wrangler.jsonc",
             "topLevelName": "app", "legacy_env": True, "compatibility_date": "2025-06-01",
             "jsx_factory": "React.createElement", "jsx_fragment": "React.Fragment",
             "rules": [{"type": "ESModule", "globs": ["**/*.js"]}], "name": "app",
             "main": "index.js", "triggers": {}, "kv_namespaces": [], "vectorize": [],
             "logfwdr": {"bindings": []}, "no_bundle": True,
             "dev": {"ip": "localhost", "local_protocol": "http"}}
    assert warnings_for(built, "wrangler.json", bundled=False) == []
    # Still named: a key nobody knows, even in a generated config.
    assert warnings_for({**built, "mystery": 1}, "wrangler.json", bundled=False) == [
        "wrangler.json: `mystery` is not a wrangler config key WDL knows; it is ignored"]
    # A hand-written config's bundler keys, uploaded as they are, are named.
    assert warnings_for({"jsx_factory": "h"}, "wrangler.toml", bundled=False)
