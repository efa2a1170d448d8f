"""`wdl hyperdrive create|list|get|update|delete`: Hyperdrive configs (docs/hyperdrive.md).

The connection string goes to the control API, which seals it; nothing here prints
it. `--connection-string -` reads it from stdin, so it stays out of the process list
and the shell's history.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from cli.common import (
    JsonOpt,
    NsOpt,
    ProfileOpt,
    TokenOpt,
    UrlOpt,
    connect,
    outcome,
    print_json,
    table,
    when,
)

app = typer.Typer(name="hyperdrive", no_args_is_help=True,
                  help="Hyperdrive configs: PostgreSQL origins behind the platform's pooler.")

ConnOpt = Annotated[str, typer.Option(
    "--connection-string", help="postgres://user:password@host:port/database ('-': stdin)",
    show_default=False)]
PoolOpt = Annotated[int, typer.Option(
    "--pool-size", min=0, max=100, help="origin connections; 0: the namespace's default")]


def _conn(value: str) -> str:
    return sys.stdin.readline().strip() if value == "-" else value


def _path(namespace: str, ref: str = "") -> str:
    return f"/v1/namespaces/{namespace}/hyperdrive" + (f"/{ref}" if ref else "")


def _show(doc: dict[str, Any]) -> None:
    o = doc["origin"]
    typer.echo(f"name: {doc['name']}\nid: {doc['id']}\n"
               f"origin: {o['scheme']}://{o['host']}:{o['port']}/{o['database']}\n"
               f"pool size: {doc['pool_size'] or 'namespace default'}")


@app.command("create")
def create(name: str, connection_string: ConnOpt, pool_size: PoolOpt = 0, ns: NsOpt = None,
           as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
           profile: ProfileOpt = None) -> None:
    """Create config NAME; prints its id (wrangler's `[[hyperdrive]] id`)."""
    body = {"name": name, "connection_string": _conn(connection_string),
            "pool_size": pool_size}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(_path(namespace), body)
    if as_json:
        print_json(result)
        return
    outcome(result, f"Hyperdrive config {name} created", False)
    typer.echo(f'[[hyperdrive]]\nbinding = "HYPERDRIVE"\nid = "{result["id"]}"')


@app.command("list")
def list_(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
          token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        docs = client.get(_path(namespace))
    if as_json:
        print_json(docs)
        return
    rows = [{"name": d["name"], "id": d["id"],
             "origin": f"{d['origin']['host']}:{d['origin']['port']}/{d['origin']['database']}",
             "created": d.get("created_at")} for d in docs]
    table(rows, [("name", "NAME"), ("id", "ID"), ("origin", "ORIGIN"), ("created", "CREATED")],
          {"created": when})


@app.command("get")
def get(ref: Annotated[str, typer.Argument(help="the config's name or id")], ns: NsOpt = None,
        as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
        profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        doc = client.get(_path(namespace, ref))
    if as_json:
        print_json(doc)
    else:
        _show(doc)


@app.command("update")
def update(ref: Annotated[str, typer.Argument(help="the config's name or id")],
           connection_string: ConnOpt, pool_size: PoolOpt = 0, ns: NsOpt = None,
           as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
           profile: ProfileOpt = None) -> None:
    """A new origin; the id and the binding's credentials stay (no deploy needed)."""
    body = {"connection_string": _conn(connection_string), "pool_size": pool_size}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.put(_path(namespace, ref), body)
    outcome(result, f"Hyperdrive config {ref} updated", as_json)


@app.command("delete")
def delete(ref: Annotated[str, typer.Argument(help="the config's name or id")],
           force: Annotated[bool, typer.Option(
               "--force", help="even if an active version binds it")] = False,
           ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
           token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.request("DELETE", _path(namespace, ref),
                                params={"force": "true"} if force else {})
    outcome(result, f"Hyperdrive config {ref} deleted", as_json)
