"""`wdl deploy` follows wrangler's redirected config (`.wrangler/deploy/config.json`) with
wrangler's rules, and refuses a broken one as wrangler does."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cli.redirect import project_directory
from cli.wrangler import ProjectError, _as_is, read_bindings, read_project

pytestmark = pytest.mark.unit


def built(tmp_path: Path, config_path: str = "../../dist/app/wrangler.json") -> Path:
    """A project as a framework build leaves it."""
    (tmp_path / "wrangler.jsonc").write_text('{"name": "app", "main": "src/index.js"}')
    out = tmp_path / "dist" / "app"
    out.mkdir(parents=True)
    (out / "wrangler.json").write_text(json.dumps({
        "name": "app", "main": "index.js", "compatibility_date": "2025-06-01",
        "no_bundle": True, "logfwdr": {"bindings": []}, "vectorize": [],
        "configPath": str(tmp_path / "wrangler.jsonc")}))
    (out / "index.js").write_text("export default { fetch() { return new Response('x') } }")
    deploy = tmp_path / ".wrangler" / "deploy"
    deploy.mkdir(parents=True)
    (deploy / "config.json").write_text(json.dumps({"configPath": config_path,
                                                    "auxiliaryWorkers": []}))
    return tmp_path


def test_the_redirected_config_is_deployed(tmp_path: Path) -> None:
    root = built(tmp_path)
    directory, config = project_directory(root)
    assert directory == root / "dist" / "app"
    assert config == root / "dist" / "app" / "wrangler.json"
    project = read_project(directory)
    assert (project.name, project.main, project.no_bundle) == ("app", "index.js", True)
    # The built config itself is no module of the worker.
    main, modules = _as_is(project)
    assert (main, [m.name for m in modules]) == ("index.js", ["index.js"])


def test_a_subdirectory_finds_the_deploy_config_above_it(tmp_path: Path) -> None:
    root = built(tmp_path)
    (root / "src").mkdir()
    assert project_directory(root / "src")[0] == root / "dist" / "app"


def test_without_a_deploy_config_nothing_changes(tmp_path: Path) -> None:
    (tmp_path / "wrangler.toml").write_text('name = "x"\n')
    assert project_directory(tmp_path) == (tmp_path, None)


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", "failed to parse the deploy configuration file"),
    ('{"auxiliaryWorkers": []}', 'the required "configPath" property was not found'),
    ('{"configPath": "../../dist/nowhere/wrangler.json"}', "does not exist"),
    ('{"configPath": "../../dist/app/index.js"}', "must be named"),
])
def test_a_broken_deploy_config_is_refused(tmp_path: Path, content: str, message: str) -> None:
    root = built(tmp_path)
    (root / ".wrangler" / "deploy" / "config.json").write_text(content)
    with pytest.raises(ProjectError, match=message):
        project_directory(root)


def test_a_deploy_config_of_another_base_is_refused(tmp_path: Path) -> None:
    root = built(tmp_path)
    inner = root / "packages" / "web"
    inner.mkdir(parents=True)
    (inner / "wrangler.toml").write_text('name = "web"\n')
    with pytest.raises(ProjectError, match="do not share the same base path"):
        project_directory(inner)


def test_empty_tables_of_a_built_config_declare_nothing() -> None:
    assert read_bindings({"logfwdr": {"bindings": []}, "unsafe": {}, "vectorize": []},
                         "wrangler.json") == []
    with pytest.raises(ProjectError, match="`logfwdr`"):
        read_bindings({"logfwdr": {"bindings": [{"name": "x"}]}}, "wrangler.json")


def test_a_deploy_config_planted_above_by_another_user_is_refused(tmp_path: Path) -> None:
    root = built(tmp_path)
    (root / "dist" / "app" / "wrangler.json").unlink()
    (root / "wrangler.jsonc").unlink()
    inner = root / "mine"
    inner.mkdir()
    planted = root / ".wrangler" / "deploy" / "config.json"
    planted.write_text('{"configPath": "../../mine/../other/wrangler.json"}')
    os.chown(planted, 65534, 65534)
    with pytest.raises(ProjectError, match="owned by another user"):
        project_directory(inner)
    os.chown(planted, os.getuid(), os.getgid())  # the user's own: followed (and missing)
    with pytest.raises(ProjectError, match="does not exist"):
        project_directory(inner)
