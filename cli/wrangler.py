"""Read a wrangler project and turn it into the modules of one version.

`wrangler.toml`, `wrangler.jsonc` or `wrangler.json`: name, main,
compatibility_date, compatibility_flags, vars, triggers.crons (and
`no_bundle`). Bundling runs the pinned Wrangler's dry run
(`wrangler deploy --dry-run --outdir DIR`), which builds locally and sends
nothing to Cloudflare. Without Wrangler, or with `no_bundle`, the modules
are uploaded as they are: the main module and the module files beside it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.assets import AssetsConfigError, AssetsProject, read_assets
from cli.wrangler_keys import EnvError, keys_of, select_env, warnings_for
from eventlog import bindings
from eventlog.bindings import BindingConfigError
from eventlog.bindings.d1 import read_databases
from eventlog.bindings.queue import queues_table
from eventlog.bindings.spec import integer, string, table_list
from services.bundles import guess_module_type
from services.wrangler_routes import RouteError, read_routes

REPO_ROOT = Path(__file__).resolve().parent.parent
CONFIG_NAMES = ("wrangler.toml", "wrangler.jsonc", "wrangler.json")
_SOURCE_SUFFIXES = {".js", ".mjs", ".cjs", ".wasm", ".json", ".txt", ".html", ".bin", ".py"}
_SKIP_DIRS = {"node_modules", ".git", ".wrangler", "dist"}


class ProjectError(Exception):
    """The project cannot be read or bundled (a usage error for the CLI)."""


@dataclass
class Project:
    root: Path
    name: str
    main: str
    compatibility_date: str
    compatibility_flags: list[str] = field(default_factory=list)
    vars: dict[str, Any] = field(default_factory=dict)
    crons: list[str] = field(default_factory=list)
    no_bundle: bool = False
    bindings: list[dict[str, str]] = field(default_factory=list)
    """Resource and service bindings, in the control API's shape (kv, r2, service)."""
    queue_consumers: list[dict[str, Any]] = field(default_factory=list)
    """`queues.consumers`: set for this worker after its upload (docs/queues.md)."""
    env: str | None = None
    """`--env NAME`: the config is `[env.NAME]` over the top level (cli/wrangler_keys.py)."""
    routes: list[Any] = field(default_factory=list)
    """`routes` / `route` entries as written: the control API turns them into host claims."""
    workers_dev: bool = True
    """False: served on its routes only, not on the namespace URL."""
    warnings: list[str] = field(default_factory=list)
    """Keys deployed without effect, and wrangler's environment warnings."""
    doc: dict[str, Any] = field(default_factory=dict)
    """The config as the environment sees it."""
    tail_consumers: list[str] = field(default_factory=list)
    """`tail_consumers`: Tail Workers of this namespace (docs/tail-workers.md)."""
    assets: AssetsProject | None = None
    """`assets` (cli/assets.py); with no `main`, an assets-only project."""


@dataclass
class BuiltModule:
    name: str
    type: str
    content: bytes


def strip_jsonc(text: str) -> str:
    """Drop // and /* */ comments and trailing commas, leaving strings untouched."""
    out: list[str] = []
    i, n = 0, len(text)
    in_string = False
    while i < n:
        c = text[i]
        if in_string:
            out.append(c)
            if c == "\\" and i + 1 < n:
                out.append(text[i + 1])
                i += 2
                continue
            if c == '"':
                in_string = False
            i += 1
        elif c == '"':
            in_string = True
            out.append(c)
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] != "\n":
                i += 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c in "]}":
            # Remove a trailing comma (and the whitespace after it) before a closer.
            j = len(out) - 1
            while j >= 0 and out[j].isspace():
                j -= 1
            if j >= 0 and out[j] == ",":
                del out[j]
            out.append(c)
            i += 1
        else:
            out.append(c)
            i += 1
    return "".join(out)


# Wrangler keys WDL does not serve: deploy refuses them before any upload, naming the
# key, rather than deploying a worker whose env lacks them (the table: cli/wrangler_keys.py).
UNSUPPORTED_KEYS = keys_of("refused")


def _declared(value: Any) -> bool:
    """A key that declares something: not empty, nor a table of empty lists (framework
    builds write every key, e.g. `"logfwdr": {"bindings": []}`)."""
    if isinstance(value, dict):
        return any(_declared(v) for v in value.values())
    return bool(value)


def read_bindings(doc: dict[str, Any], config: str) -> list[dict[str, str]]:
    """Every binding the config declares, as the control API's bindings (each kind's
    spec reads its own keys: eventlog/bindings/)."""
    unsupported = [k for k in UNSUPPORTED_KEYS if _declared(doc.get(k))]
    if unsupported:
        raise ProjectError(
            f"{config}: {', '.join(f'`{k}`' for k in unsupported)} "
            f"{'is' if len(unsupported) == 1 else 'are'} not supported by WDL yet; remove "
            "it to deploy (docs/compatibility.md lists what is supported)")
    if doc.get("legacy_env") is False:
        raise ProjectError(f"{config}: `legacy_env = false` (service environments) is not "
                           "supported by WDL; wrangler environments are (`--env NAME`)")
    try:
        return bindings.read_wrangler(doc, config)
    except BindingConfigError as exc:
        raise ProjectError(str(exc)) from None


def read_queue_consumers(doc: dict[str, Any], config: str) -> list[dict[str, Any]]:
    """`queues.consumers`: the queues this worker consumes, in the control API's shape
    (queue plus the settings given; the API's defaults fill the rest)."""
    try:
        return _queue_consumers(doc, config)
    except BindingConfigError as exc:
        raise ProjectError(str(exc)) from None


def _queue_consumers(doc: dict[str, Any], config: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    limits = {"max_batch_size": (1, 100), "max_batch_timeout": (0, 60),
              "max_retries": (0, 100), "retry_delay": (0, 43_200),
              "max_concurrency": (1, 250)}
    for i, c in enumerate(table_list(queues_table(doc, config), "consumers", config)):
        where = f"{config}: queues.consumers[{i}]"
        if c.get("type", "worker") != "worker":
            raise ProjectError(f"{where}: `type = {c.get('type')!r}` (pull consumers) is not "
                               "supported by WDL; only push consumers (a queue() handler)")
        entry: dict[str, Any] = {"queue": string(c, "queue", where)}
        for key, (low, high) in limits.items():
            value = integer(c, key, where, low, high)
            if value is not None:
                entry[key] = value
        dlq = string(c, "dead_letter_queue", where, required=False)
        if dlq:
            entry["dead_letter_queue"] = dlq
        out.append(entry)
    return out


def read_d1_databases(doc: dict[str, Any], config: str) -> list[dict[str, str]]:
    """`d1_databases` with what deploy provisions them from (eventlog/bindings/d1.py)."""
    try:
        return read_databases(doc, config)
    except BindingConfigError as exc:
        raise ProjectError(str(exc)) from None


def read_config(root: Path) -> tuple[dict[str, Any], str]:
    """The parsed wrangler config of a project and its file name."""
    path = find_config(root)
    try:
        text = path.read_text(encoding="utf-8")
        doc: dict[str, Any] = (tomllib.loads(text) if path.suffix == ".toml"
                               else json.loads(strip_jsonc(text)))
    except (OSError, ValueError) as exc:
        raise ProjectError(f"cannot parse {path.name}: {exc}") from None
    if not isinstance(doc, dict):
        raise ProjectError(f"{path.name}: the config must be an object of keys, not "
                           f"{_describe(doc)}")
    return doc, path.name


def find_config(root: Path) -> Path:
    for name in CONFIG_NAMES:
        if (root / name).is_file():
            return root / name
    raise ProjectError(f"no {', '.join(CONFIG_NAMES)} in {root}")


def _typed(doc: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str,
           config: str, default: Any, label: str | None = None) -> Any:
    """`doc[key]` if it has the type wrangler gives it, else a ProjectError naming the key
    (`label`: its full name, e.g. `triggers.crons`)."""
    value = doc.get(key)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ProjectError(f"{config}: `{label or key}` must be {what}, not "
                           f"{_describe(value)}")
    return value


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    names = {bool: "a boolean", int: "an integer", float: "a number", list: "a list",
             dict: "a table"}
    return names.get(type(value), f"a {type(value).__name__} ({value!r})")


def _strings(doc: dict[str, Any], key: str, config: str, label: str | None = None) -> list[str]:
    items = _typed(doc, key, list, "a list of strings", config, [], label)
    for item in items:
        if not isinstance(item, str):
            raise ProjectError(f"{config}: `{label or key}` must be a list of strings; "
                               f"{_describe(item)} is not one")
    return list(items)


def read_project(root: Path, env: str | None = None) -> Project:
    top, config = read_config(root)
    try:
        doc, env_warnings = select_env(top, env, config)
    except EnvError as exc:
        raise ProjectError(str(exc)) from None
    name = _typed(doc, "name", str, "a string (the worker's name)", config, "")
    main = _typed(doc, "main", str, "a string (the entry module's path)", config, "")
    if not name:
        raise ProjectError(f"{config}: `name` is required")
    try:
        assets = read_assets(doc, config, root)
    except AssetsConfigError as exc:
        raise ProjectError(str(exc)) from None
    if not main and assets is None:
        raise ProjectError(f"{config}: `main` is required (or `assets` for an assets-only "
                           "project)")
    if main and not (root / main).is_file():
        raise ProjectError(f"{config}: main module {main!r} does not exist")
    date = doc.get("compatibility_date")
    if not isinstance(date, str):
        hint = (" (quote it: a bare TOML date is not a string)"
                if date is not None and not isinstance(date, str | int | float | bool) else "")
        raise ProjectError(f"{config}: `compatibility_date` is required and must be a "
                           f"\"YYYY-MM-DD\" string{hint}")
    vars_ = _typed(doc, "vars", dict, "a table of names to values", config, {})
    triggers = _typed(doc, "triggers", dict, "a table (crons = [...])", config, {})
    crons = _strings(triggers, "crons", config, "triggers.crons")
    no_bundle = _typed(doc, "no_bundle", bool, "true or false", config, False)
    workers_dev = _typed(doc, "workers_dev", bool, "true or false", config, True)
    try:
        read_routes(doc, config)  # the control API translates them again: it is the arbiter
    except RouteError as exc:
        raise ProjectError(str(exc)) from None
    routes = [doc["route"]] if doc.get("route") is not None else list(doc.get("routes") or [])
    return Project(root=root, name=name, main=main, compatibility_date=date,
                   compatibility_flags=_strings(doc, "compatibility_flags", config),
                   vars=dict(vars_), crons=crons, no_bundle=no_bundle,
                   bindings=read_bindings(doc, config),
                   queue_consumers=read_queue_consumers(doc, config), env=env,
                   routes=routes, workers_dev=workers_dev, warnings=env_warnings, doc=doc,
                   tail_consumers=read_tail_consumers(doc, config), assets=assets)


def deploy_warnings(project: Project, how: str) -> list[str]:
    """Wrangler's environment warnings, then every key that deploys without effect."""
    config = find_config(project.root).name
    return [*project.warnings, *warnings_for(project.doc, config, bundled=how == "wrangler")]


def read_tail_consumers(doc: dict[str, Any], config: str) -> list[str]:
    """`tail_consumers = [{service = "my-tail"}]` as worker names of the namespace.

    `environment` names a Cloudflare *service environment* (the legacy model where one
    script has environments); WDL has none, so it is refused rather than ignored: name
    the tail worker as it was deployed (`wdl deploy --env staging` names it
    `<name>-staging`)."""
    out: list[str] = []
    try:
        entries = table_list(doc, "tail_consumers", config)
    except BindingConfigError as exc:
        raise ProjectError(str(exc)) from None
    for i, entry in enumerate(entries):
        where = f"{config}: tail_consumers[{i}]"
        unknown = sorted(set(entry) - {"service", "environment"})
        if unknown:
            raise ProjectError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))} "
                               "(a tail consumer is {service = \"worker-name\"})")
        if entry.get("environment") is not None:
            raise ProjectError(f"{where}: `environment` (a Cloudflare service environment) is "
                               "not supported by WDL; name the tail worker by its deployed "
                               "name instead, e.g. service = \"my-tail-staging\"")
        service = entry.get("service")
        if not isinstance(service, str) or not service:
            raise ProjectError(f"{where}: `service` is required and must be a string")
        out.append(service)
    return out


def wrangler_command() -> list[str] | None:
    configured = os.environ.get("WDL_WRANGLER")
    if configured:
        return [configured]
    local = REPO_ROOT / "workerd" / "node_modules" / ".bin" / "wrangler"
    if local.exists():
        return [str(local)]
    npx = shutil.which("npx")
    if npx and (REPO_ROOT / "workerd" / "package.json").exists():
        return [npx, "--prefix", str(REPO_ROOT / "workerd"), "wrangler"]
    return None


def bundle(project: Project) -> tuple[str, list[BuiltModule], str]:
    """(main module name, modules, how): bundled by Wrangler, or as they are."""
    command = None if project.no_bundle else wrangler_command()
    if command is None:
        main, modules = _as_is(project)
        return main, modules, "as-is"
    with tempfile.TemporaryDirectory(prefix="wdl-bundle-") as out:
        env = {**os.environ, "CLOUDFLARE_API_TOKEN": os.environ.get("CLOUDFLARE_API_TOKEN",
                                                                    "dummy"),
               "WRANGLER_SEND_METRICS": "false", "CI": "true", "NO_COLOR": "1"}
        try:
            env_args = ["--env", project.env] if project.env else []
            done = subprocess.run([*command, "deploy", "--dry-run", "--outdir", out, *env_args],
                                  cwd=project.root, env=env, capture_output=True, text=True,
                                  timeout=300, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ProjectError(f"wrangler could not run: {exc}") from None
        if done.returncode != 0:
            tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
            raise ProjectError(f"wrangler bundling failed:\n{tail}")
        main, modules = _collect_outdir(Path(out), project)
    return main, modules, "wrangler"


def _collect_outdir(out: Path, project: Project) -> tuple[str, list[BuiltModule]]:
    modules: list[BuiltModule] = []
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).as_posix()
        if rel.endswith(".map") or rel == "README.md":
            continue
        modules.append(BuiltModule(rel, guess_module_type(rel), path.read_bytes()))
    stem = Path(project.main).stem
    names = {m.name for m in modules}
    for candidate in (f"{stem}.js", f"{stem}.mjs", "index.js"):
        if candidate in names:
            return candidate, modules
    scripts = [m.name for m in modules if m.type in ("esm", "commonjs")]
    if len(scripts) == 1:
        return scripts[0], modules
    raise ProjectError(f"cannot tell the entry module among {sorted(names)}")


def _inside(root: Path, path: Path) -> bool:
    return path == root or root in path.parents


def _as_is(project: Project) -> tuple[str, list[BuiltModule]]:
    """The main module and the source files beside it (and below), as they are. Only files
    under the project directory are read: `main` outside it, or a symlink that leads out of
    it, is refused rather than uploaded."""
    root = project.root.resolve()
    main_path = (root / project.main).resolve()
    if not _inside(root, main_path):
        raise ProjectError(f"`main` {project.main!r} is outside the project directory {root}: "
                           "when modules are uploaded as they are (no_bundle), only "
                           "files under the project are read")
    base = main_path.parent
    modules: list[BuiltModule] = []
    for directory, dirnames, filenames in os.walk(base):
        here = Path(directory)
        dirnames[:] = sorted(d for d in dirnames
                             if d not in _SKIP_DIRS and not d.startswith("."))
        for entry in [*dirnames, *filenames]:
            path = here / entry
            if path.is_symlink() and not _inside(root, path.resolve()):
                rel = path.relative_to(root).as_posix()
                raise ProjectError(f"{rel} links outside the project directory (to "
                                   f"{path.resolve()}): when modules are uploaded as they are "
                                   "(no_bundle), only files under the project are read")
        for filename in sorted(filenames):
            path = here / filename
            if filename.startswith(".") or path.suffix not in _SOURCE_SUFFIXES \
                    or (here == root and filename in CONFIG_NAMES):  # e.g. a built config
                continue
            if not path.is_file():
                continue
            rel = path.relative_to(base).as_posix()
            modules.append(BuiltModule(rel, guess_module_type(rel), path.read_bytes()))
    modules.sort(key=lambda m: m.name)
    return main_path.relative_to(base).as_posix(), modules


def split_vars(values: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """String vars stay vars; any other JSON value becomes a `json` binding."""
    plain: dict[str, str] = {}
    bindings: list[dict[str, str]] = []
    for key, value in values.items():
        if isinstance(value, str):
            plain[key] = value
        else:
            bindings.append({"name": key, "kind": "json",
                             "value": json.dumps(value, separators=(",", ":"))})
    return plain, bindings
