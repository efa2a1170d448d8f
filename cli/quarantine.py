"""`wdl quarantine list|lift`: versions the watchdog took out of service."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer

from cli.common import (
    JsonOpt,
    NsOpt,
    ProfileOpt,
    TokenOpt,
    UrlOpt,
    connect,
    fail,
    outcome,
    print_json,
    table,
)

app = typer.Typer(help="Versions quarantined after hanging or crashing the data plane.",
                  no_args_is_help=True)


def _when(ms: Any) -> str:
    if not isinstance(ms, int):
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@app.command("list")
def list_(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
          token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Quarantined versions (of one namespace with --ns; else all the token may see)."""
    with connect(url, token, profile, ns) as (client, namespace):
        rows = client.get(f"/v1/namespaces/{namespace}/quarantine" if ns else "/v1/quarantine")
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no quarantined versions")
        return
    table([{**r, "worker": f"{r['namespace']}/{r['worker']}", "at": _when(r.get("at"))}
           for r in rows],
          [("worker", "worker"), ("version_id", "version"), ("reason", "reason"),
           ("strikes", "strikes"), ("at", "since"), ("detail", "detail")])


@app.command("lift")
def lift(target: Annotated[str, typer.Argument(help="NAMESPACE/WORKER")],
         version: Annotated[str, typer.Argument(help="the quarantined version id")],
         note: Annotated[str, typer.Option("--note", help="why it is safe again")] = "",
         as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
         profile: ProfileOpt = None) -> None:
    """Let a quarantined version serve again (admin)."""
    namespace, _, worker = target.partition("/")
    if not namespace or not worker:
        raise fail(f"{target!r}: expected NAMESPACE/WORKER", 2)
    with connect(url, token, profile) as (client, _ns):
        result = client.request(
            "DELETE", f"/v1/namespaces/{namespace}/workers/{worker}/versions/{version}/quarantine",
            params={"note": note} if note else None)
    outcome(result, f"quarantine of {namespace}/{worker} {version} lifted", as_json)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="quarantine")
