"""What `wdl deploy` reads from a project: wrangler type errors are clean ProjectErrors
naming the key, and modules uploaded as they are come only from under the project."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from cli.deploy import precheck
from cli.wrangler import ProjectError, _as_is, read_project
from services.api.limits import BodyLimit

pytestmark = pytest.mark.unit

HEAD = 'name = "w"\nmain = "src/index.js"\ncompatibility_date = "2025-11-17"\n'


def project(tmp_path: Path, toml: str, head: str = HEAD) -> Path:
    root = tmp_path / "p"
    (root / "src").mkdir(parents=True)
    (root / "src" / "index.js").write_text("export default {};\n")
    (root / "wrangler.toml").write_text(head + toml)
    return root


@pytest.mark.parametrize(("toml", "needle"), [
    ('vars = "oops"\n', "`vars` must be a table of names to values, not the string 'oops'"),
    ("vars = [1]\n", "`vars` must be a table"),
    ('compatibility_flags = "nodejs_compat"\n', "`compatibility_flags` must be a list"),
    ("compatibility_flags = [1]\n", "`compatibility_flags` must be a list of strings"),
    ('triggers = "hourly"\n', "`triggers` must be a table"),
    ('[triggers]\ncrons = "* * * * *"\n', "`triggers.crons` must be a list of strings"),
    ("[triggers]\ncrons = [5]\n", "`triggers.crons` must be a list of strings"),
    ('no_bundle = "yes"\n', "`no_bundle` must be true or false"),
    ("no_bundle = 1\n", "`no_bundle` must be true or false"),
    ('kv_namespaces = "x"\n', "`kv_namespaces` must be a list of tables"),
    ('queues = "x"\n', "`queues` must be a table"),
])
def test_type_errors_name_the_key(tmp_path: Path, toml: str, needle: str) -> None:
    with pytest.raises(ProjectError) as caught:
        read_project(project(tmp_path, toml))
    assert needle in str(caught.value)


@pytest.mark.parametrize(("head", "needle"), [
    ('name = 3\nmain = "src/index.js"\ncompatibility_date = "2025-11-17"\n', "`name` must be"),
    ('name = "w"\nmain = []\ncompatibility_date = "2025-11-17"\n', "`main` must be"),
    ('name = "w"\nmain = "src/index.js"\ncompatibility_date = 2025-11-17\n',
     "a bare TOML date is not a string"),
])
def test_top_level_type_errors_name_the_key(tmp_path: Path, head: str, needle: str) -> None:
    with pytest.raises(ProjectError) as caught:
        read_project(project(tmp_path, "", head))
    assert needle in str(caught.value)


def test_a_json_config_that_is_not_an_object(tmp_path: Path) -> None:
    root = tmp_path / "p"
    root.mkdir()
    (root / "wrangler.json").write_text("[1, 2]")
    with pytest.raises(ProjectError, match="must be an object"):
        read_project(root)


def test_as_is_reads_main_and_the_files_beside_it(tmp_path: Path) -> None:
    root = project(tmp_path, "no_bundle = true\n")
    (root / "src" / "lib").mkdir()
    (root / "src" / "lib" / "util.js").write_text("export const x = 1;\n")
    (root / "src" / "lib" / "alias.js").symlink_to(root / "src" / "lib" / "util.js")
    (root / "src" / ".hidden.js").write_text("")
    main, modules = _as_is(read_project(root))
    assert main == "index.js"
    assert [m.name for m in modules] == ["index.js", "lib/alias.js", "lib/util.js"]


def test_as_is_refuses_main_outside_the_project(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "x.js").write_text("export default {};\n")
    (elsewhere / "secret.json").write_text("{}")
    root = project(tmp_path, "no_bundle = true\n",
                   'name = "w"\nmain = "../elsewhere/x.js"\n'
                   'compatibility_date = "2025-11-17"\n')
    with pytest.raises(ProjectError, match="outside the project directory"):
        _as_is(read_project(root))


@pytest.mark.parametrize("kind", ["file", "directory", "main"])
def test_as_is_refuses_symlinks_out_of_the_project(tmp_path: Path, kind: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secret.json").write_text("{}")
    (elsewhere / "x.js").write_text("export default {};\n")
    root = project(tmp_path, "no_bundle = true\n")
    if kind == "file":
        (root / "src" / "leak.json").symlink_to(elsewhere / "secret.json")
    elif kind == "directory":
        (root / "src" / "lib").symlink_to(elsewhere, target_is_directory=True)
    else:
        (root / "src" / "index.js").unlink()
        (root / "src" / "index.js").symlink_to(elsewhere / "x.js")
    with pytest.raises(ProjectError, match="outside the project"):
        _as_is(read_project(root))


@pytest.mark.parametrize(("args", "needle"), [
    ({"plain_vars": {"__WDL_DO": "x"}}, "reserved_name: vars.__WDL_DO"),
    ({"bindings": [{"name": "_cf_KV", "kind": "kv", "target": "k"}]}, "reserved_name"),
    ({"bindings": [{"name": "O", "kind": "durable_object", "target": "__wdl_Obj"}]},
     "reserved_name"),
    ({"crons": ["* * * * * *"]}, "6 fields"),
    ({"flags": ["no_such_flag"]}, "unknown_compatibility_flag"),
    ({"date": "2099-01-01"}, "compatibility_date_unsupported"),
])
def test_deploy_checks_before_provisioning(args: dict[str, Any], needle: str) -> None:
    full: dict[str, Any] = {"date": "2025-11-17", "flags": [], "crons": [], "bindings": [],
                            "plain_vars": {}, "modules": [], **args}
    with pytest.raises(ProjectError) as caught:
        precheck(**full)
    assert needle in str(caught.value)


async def _run(app: BodyLimit, chunks: list[bytes]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    queue = [{"type": "http.request", "body": c, "more_body": i < len(chunks) - 1}
             for i, c in enumerate(chunks)]

    async def receive() -> dict[str, Any]:
        return queue.pop(0) if queue else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app({"type": "http", "path": "/v1/x", "headers": []}, receive, send)  # type: ignore[arg-type]
    return sent


def _app_that_answers_400_on_a_failed_read() -> Callable[..., Awaitable[None]]:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while (await receive()).get("more_body"):
                pass
            status = 200
        except Exception:  # what a framework does with a body it could not read
            status = 400
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
    return app


def test_a_chunked_body_over_the_limit_is_413_even_if_the_app_catches_the_error() -> None:
    app = BodyLimit(_app_that_answers_400_on_a_failed_read(), max_bytes=10)
    sent = asyncio.run(_run(app, [b"a" * 6, b"a" * 6]))
    assert sent[0]["status"] == 413
    assert b"request_too_large" in sent[1]["body"]
    assert len([m for m in sent if m["type"] == "http.response.start"]) == 1
    ok = asyncio.run(_run(BodyLimit(_app_that_answers_400_on_a_failed_read(), max_bytes=10),
                          [b"a" * 5, b"a" * 5]))
    assert ok[0]["status"] == 200
