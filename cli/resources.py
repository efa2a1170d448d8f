"""`wdl kv namespace …` and `wdl r2 bucket …`, and deploy's provisioning of missing resources."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cli.client import ControlClient
from cli.common import (
    JsonOpt,
    NsOpt,
    ProfileOpt,
    TokenOpt,
    UrlOpt,
    connect,
    err,
    outcome,
    print_json,
    table,
    when,
)
from eventlog.bindings import SPECS

ForceOpt = Annotated[bool, typer.Option("--force", help="delete even if an active version "
                                        "binds it (its calls then fail)")]
# binding kind -> (API path segment, what users call it: the registry's label)
KINDS = {kind: (kind, SPECS[kind].label) for kind in ("kv", "r2")}


def _resources(client: ControlClient, namespace: str, kind: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.get(f"/v1/namespaces/{namespace}/{KINDS[kind][0]}")
    return rows


def provision(client: ControlClient, namespace: str, bindings: list[dict[str, str]], *,
              create: bool, quiet: bool = False) -> list[dict[str, str]]:
    """Create the KV namespaces and buckets the bindings name that do not exist yet.

    Returns what is missing (with `create=False`, nothing is created and the
    server's deploy refusal, `binding_target_missing`, names it).
    """
    missing: list[dict[str, str]] = []
    for kind in KINDS:
        wanted = sorted({b["target"] for b in bindings if b["kind"] == kind})
        if not wanted:
            continue
        have = {row["name"] for row in _resources(client, namespace, kind)}
        missing += [{"kind": kind, "name": name} for name in wanted if name not in have]
    if not create:
        return missing
    for item in missing:
        path, label = KINDS[item["kind"]]
        client.post(f"/v1/namespaces/{namespace}/{path}", {"name": item["name"]})
        if not quiet:
            err.print(f"[green]provisioned[/] {label} {item['name']} in {namespace}",
                      highlight=False)
    return missing


def _group(kind: str, noun: str) -> typer.Typer:
    path, label = KINDS[kind]
    group = typer.Typer(help=f"{label}s of a namespace (control state: each change is an "
                        "event).", no_args_is_help=True)

    @group.command("create")
    def create(name: str, ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
               token: TokenOpt = None, profile: ProfileOpt = None) -> None:
        with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
            result = client.post(f"/v1/namespaces/{namespace}/{path}", {"name": name})
        outcome(result, f"{label} {name} created in {namespace}", as_json)

    @group.command("list")
    def list_(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
              token: TokenOpt = None, profile: ProfileOpt = None) -> None:
        with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
            rows = _resources(client, namespace, kind)
        if as_json:
            print_json(rows)
            return
        table(rows, [("name", noun), ("created_at", "created"), ("created_by", "by")],
              {"created_at": when})

    @group.command("delete")
    def delete(name: str, ns: NsOpt = None, force: ForceOpt = False, as_json: JsonOpt = False,
               url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
        """Delete it and its data; refused while an active version binds it, unless --force."""
        with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
            result = client.request("DELETE", f"/v1/namespaces/{namespace}/{path}/{name}",
                                    params={"force": "true" if force else None})
        outcome(result, f"{label} {name} deleted from {namespace}", as_json)

    return group


kv_namespace_app = _group("kv", "namespace")
r2_bucket_app = _group("r2", "bucket")
