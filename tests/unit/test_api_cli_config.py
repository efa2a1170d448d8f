"""CLI configuration, wrangler project reading and JSONC handling (no servers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli.client import EXIT_FAILURE, EXIT_REFUSED, EXIT_USAGE, ApiFailure, resolve_config
from cli.wrangler import ProjectError, _as_is, read_project, split_vars, strip_jsonc


def test_jsonc_comments_and_trailing_commas() -> None:
    text = '{\n // c\n "a": "x // not a comment", /* b */ "b": [1, 2,],\n "c": "\\" /*",\n}'
    assert json.loads(strip_jsonc(text)) == {"a": "x // not a comment", "b": [1, 2],
                                             "c": '" /*'}


def test_read_project_toml_and_jsonc(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "index.js").write_text("export default {}")
    (tmp_path / "src" / "util.mjs").write_text("export const x = 1")
    (tmp_path / "wrangler.toml").write_text(
        'name = "w"\nmain = "src/index.js"\ncompatibility_date = "2025-01-01"\n'
        'compatibility_flags = ["nodejs_compat"]\n[vars]\nA = "1"\nB = { c = 2 }\n'
        '[triggers]\ncrons = ["0 * * * *"]\n')
    project = read_project(tmp_path)
    assert (project.name, project.main, project.crons) == ("w", "src/index.js", ["0 * * * *"])
    assert split_vars(project.vars) == ({"A": "1"}, [{"name": "B", "kind": "json",
                                                      "value": '{"c":2}'}])
    main, modules = _as_is(project)
    assert main == "index.js"
    assert [(m.name, m.type) for m in modules] == [("index.js", "esm"), ("util.mjs", "esm")]
    (tmp_path / "wrangler.toml").unlink()
    (tmp_path / "wrangler.jsonc").write_text(
        '{ "name": "j", // comment\n "main": "src/index.js", "compatibility_date": '
        '"2025-01-01", }')
    assert read_project(tmp_path).name == "j"


def test_read_project_refuses_incomplete_configs(tmp_path: Path) -> None:
    with pytest.raises(ProjectError):
        read_project(tmp_path)
    (tmp_path / "wrangler.toml").write_text('name = "w"\nmain = "missing.js"\n')
    with pytest.raises(ProjectError, match="does not exist"):
        read_project(tmp_path)


def test_config_precedence(tmp_path: Path) -> None:
    cfg = tmp_path / "config.toml"
    cfg.write_text('default_profile = "dev"\n[profiles.dev]\nurl = "http://dev:1"\n'
                   'token = "t-dev"\nnamespace = "ns-dev"\n[profiles.prod]\n'
                   'url = "http://prod:2"\n')
    env = {"WDL_CONFIG": str(cfg)}
    c = resolve_config(env=env)
    assert (c.url, c.token, c.namespace) == ("http://dev:1", "t-dev", "ns-dev")
    c = resolve_config(env={**env, "WDL_CONTROL_URL": "http://env:3/", "WDL_TOKEN": "t-env"})
    assert (c.url, c.token) == ("http://env:3", "t-env")
    c = resolve_config(url="http://flag:4", profile="prod", env=env)
    assert (c.url, c.token) == ("http://flag:4", None)
    assert resolve_config(env={"WDL_CONFIG": str(tmp_path / "none")}).url.startswith("http")


def test_exit_codes() -> None:
    assert ApiFailure(409, "stale_version", "").exit_code == EXIT_REFUSED
    assert ApiFailure(422, "validation_failed", "").exit_code == EXIT_USAGE
    assert ApiFailure(413, "bundle_too_large", "").exit_code == EXIT_USAGE
    assert ApiFailure(404, "namespace_not_found", "").exit_code == EXIT_FAILURE
    assert ApiFailure(0, "unreachable", "").exit_code == EXIT_FAILURE
