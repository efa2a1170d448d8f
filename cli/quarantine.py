"""`wdl quarantine list|lift|strikes`: namespaces (and versions) the watchdog held back."""

from __future__ import annotations

from typing import Annotated

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
    when,
)

app = typer.Typer(help="Namespaces held back (and versions quarantined) after hanging or "
                  "crashing the data plane.", no_args_is_help=True)


@app.command("list")
def list_(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
          token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Held namespaces and quarantined versions (of one namespace with --ns; else all the
    token may see)."""
    with connect(url, token, profile, ns) as (client, namespace):
        rows = client.get(f"/v1/namespaces/{namespace}/quarantine" if ns else "/v1/quarantine")
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("nothing is held back or quarantined")
        return
    table([{**r, "worker": f"{r['namespace']}/{r['worker'] or '*'}",
            "version_id": r.get("version_id") or "(every version)", "at": when(r.get("at"))}
           for r in rows],
          [("worker", "worker"), ("version_id", "version"), ("reason", "reason"),
           ("strikes", "strikes"), ("at", "since"), ("detail", "detail")])


@app.command("lift")
def lift(target: Annotated[str, typer.Argument(help="NAMESPACE (a held namespace) or "
                                               "NAMESPACE/WORKER (a quarantined version)")],
         version: Annotated[str | None, typer.Argument(
             help="the quarantined version id (with NAMESPACE/WORKER)")] = None,
         note: Annotated[str, typer.Option("--note", help="why it is safe again")] = "",
         as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
         profile: ProfileOpt = None) -> None:
    """Let a held namespace (or a quarantined version) serve again (admin)."""
    namespace, slash, worker = target.partition("/")
    if not namespace or (slash and (not worker or version is None)) or (not slash and version):
        raise fail(f"{target!r}: expected NAMESPACE, or NAMESPACE/WORKER VERSION", 2)
    params = {"note": note} if note else None
    with connect(url, token, profile) as (client, _ns):
        if not slash:
            result = client.request("DELETE", f"/v1/namespaces/{namespace}/quarantine",
                                    params=params)
        else:
            result = client.request(
                "DELETE",
                f"/v1/namespaces/{namespace}/workers/{worker}/versions/{version}/quarantine",
                params=params)
    what = namespace if not slash else f"{namespace}/{worker} {version}"
    outcome(result, f"{'hold' if not slash else 'quarantine'} of {what} lifted", as_json)


@app.command("strikes")
def strikes(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
            token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """The watchdog's strikes per namespace (within its window) and who they blamed."""
    with connect(url, token, profile) as (client, _ns):
        rows = [r for r in client.get("/v1/strikes") if ns is None or r["namespace"] == ns]
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no strikes")
        return
    table([{**r, "of": f"{r['strikes']}/{r['hold_after']} in {r['window_s']} s",
            "held": "held back" if r["held"] else "",
            "worker": r["last"]["worker"], "why": r["last"]["reason"], "at": r["last"]["at"]}
           for r in rows],
          [("namespace", "namespace"), ("of", "strikes"), ("held", "held"),
           ("worker", "last worker"), ("why", "why"), ("at", "last at")], {"at": when})


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="quarantine")
