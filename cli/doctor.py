"""`wdl whoami` (the token in use) and `wdl doctor` (is this machine set up?)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from typing import Any

import httpx
import typer

from cli.client import (
    ApiFailure,
    ClientConfig,
    ConfigError,
    ControlClient,
    config_path,
    resolve_config,
)
from cli.common import JsonOpt, ProfileOpt, TokenOpt, UrlOpt, connect, print_json, when
from cli.wrangler import wrangler_command

MIN_NODE = 20


def whoami(as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
           profile: ProfileOpt = None) -> None:
    """The token in use: id, role, namespaces, label and expiry."""
    with connect(url, token, profile) as (client, _):
        me = client.get("/v1/whoami")
    if as_json:
        print_json(me)
        return
    rows = [("token", me.get("token_id")), ("role", me.get("role")),
            ("namespaces", _scope(me)), ("label", me.get("label") or "-"),
            ("expires", when(me.get("expires_at")) or "never")]
    for key, value in rows:
        typer.echo(f"{key:<11} {value}")


def _scope(me: dict[str, Any]) -> str:
    if me.get("all_namespaces") or me.get("role") == "admin":
        return "all"
    return ", ".join(me.get("namespaces") or []) or "none"


@dataclass
class Check:
    name: str
    ok: bool | None
    """None: not checked (an earlier check it depends on failed)."""
    detail: str
    fix: str = ""


def _run(command: list[str], timeout: float) -> tuple[bool, str]:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    out = (done.stdout or done.stderr).strip().splitlines()
    return done.returncode == 0, (out[-1] if out else f"exit {done.returncode}")


def _config(url: str | None, token: str | None,
            profile: str | None) -> tuple[Check, ClientConfig | None]:
    path = config_path(os.environ)
    try:
        config = resolve_config(url, token, None, profile)
    except ConfigError as exc:
        return Check("config", False, str(exc),
                     f"fix {path} (TOML: default_profile and [profiles.NAME] url/token/"
                     "namespace) or remove it"), None
    where = str(path) if path.exists() else f"{path} absent; flags and environment only"
    return Check("config", True, where), config


def _reachable(config: ClientConfig) -> Check:
    fix = ("start the platform (`wdl dev`) or point --url / WDL_CONTROL_URL at the "
           "control API")
    try:
        r = httpx.get(f"{config.url}/healthz", timeout=5)
    except httpx.HTTPError as exc:
        return Check("control API", False, f"{config.url}: {type(exc).__name__}", fix)
    if r.status_code != 200:
        return Check("control API", False, f"{config.url}/healthz: HTTP {r.status_code}",
                     fix)
    return Check("control API", True, config.url)


def _token(config: ClientConfig, reachable: bool) -> Check:
    if not config.token:
        return Check("token", False, "no token",
                     "set WDL_TOKEN or --token (`wdl dev` prints an admin token into "
                     ".wdl/dev/admin.token)")
    if not reachable:
        return Check("token", None, "not checked: the control API is unreachable")
    try:
        with ControlClient(config) as client:
            me = client.get("/v1/whoami")
    except ApiFailure as exc:
        return Check("token", False, f"{exc.code}: {exc.message}",
                     "the token is wrong, revoked or expired: ask an admin for a new one "
                     "(`wdl tokens issue`)")
    return Check("token", True, f"{me.get('token_id')} ({me.get('role')}, "
                 f"namespaces: {_scope(me)})")


def _wrangler() -> Check:
    command = wrangler_command()
    fix = ("run `make install` (npm ci in workerd/) or set WDL_WRANGLER; without it "
           "`wdl deploy` uploads the modules unbundled")
    if command is None:
        return Check("wrangler", False, "not found", fix)
    ok, line = _run([*command, "--version"], timeout=60)
    return Check("wrangler", ok, line, "" if ok else fix)


def _node() -> Check:
    fix = f"install Node.js {MIN_NODE} or newer (wrangler needs it)"
    node = shutil.which("node")
    if node is None:
        return Check("node", False, "not found on PATH", fix)
    ok, line = _run([node, "--version"], timeout=10)
    found = re.match(r"v?(\d+)\.", line)
    if not ok or found is None:
        return Check("node", False, line, fix)
    if int(found.group(1)) < MIN_NODE:
        return Check("node", False, f"{line} is older than {MIN_NODE}", fix)
    return Check("node", True, line)


def doctor(as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
           profile: ProfileOpt = None) -> None:
    """Check the set-up: config, control API, token, wrangler, Node; exit 1 on a failure."""
    config_check, config = _config(url, token, profile)
    checks = [config_check]
    if config is not None:
        reach = _reachable(config)
        checks += [reach, _token(config, bool(reach.ok))]
    checks += [_wrangler(), _node()]
    ok = all(c.ok is not False for c in checks)
    if as_json:
        print_json({"ok": ok, "checks": [asdict(c) for c in checks]})
    else:
        for c in checks:
            mark = {True: "✓", False: "✗", None: "-"}[c.ok]
            typer.echo(f"{mark} {c.name}: {c.detail}")
            if c.fix:
                typer.echo(f"    fix: {c.fix}")
    if not ok:
        raise typer.Exit(1)
