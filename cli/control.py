"""Control-plane commands: workers, versions, promote/rollback, delete, secrets,
hosts, leases, audit, tokens and namespaces, over the control API."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from cli import deploy as deploy_cmd
from cli import doctor as doctor_cmd
from cli import policies, scaffold
from cli.client import ApiFailure
from cli.common import (
    JsonOpt,
    NsOpt,
    ProfileOpt,
    TokenOpt,
    UrlOpt,
    connect,
    err,
    fail,
    outcome,
    print_json,
    table,
    when,
)

IdemOpt = Annotated[str | None, typer.Option("--idempotency-key",
                                             help="retries with the same key do not repeat")]
WorkerOpt = Annotated[str | None, typer.Option("--worker", "-w",
                                               help="worker scope (default: namespace scope)")]


def _ws(ns: str, worker: str) -> str:
    return f"/v1/namespaces/{ns}/workers/{worker}"


# --- workers and versions ----------------------------------------------------


TagOpt = Annotated[str | None, typer.Option(
    "--tag", help="only the workers with this script tag (user workers of a dispatch "
    "namespace, docs/platforms.md)")]


def workers(ns: NsOpt = None, tag: TagOpt = None, as_json: JsonOpt = False,
            url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """List the namespace's workers with their active version."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(f"/v1/namespaces/{namespace}/workers", tag=tag)
    if as_json:
        print_json(rows)
        return
    table(rows, [("name", "worker"), ("active_version", "active"),
                 ("previous_version", "previous"), ("versions", "versions"),
                 ("deleted", "deleted"), ("tags", "tags"), ("updated_at", "updated")],
          {"updated_at": when, "tags": lambda t: ",".join(t or [])})


def versions(worker: str, ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
             token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """List a worker's versions, oldest first."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(f"{_ws(namespace, worker)}/versions")
    if as_json:
        print_json(rows)
        return
    table(rows, [("version_id", "version"), ("active", "active"), ("deleted", "deleted"),
                 ("uploaded_at", "uploaded"), ("uploaded_by", "by"), ("tag", "tag"),
                 ("message", "message"), ("bundle_sha256", "bundle")],
          {"uploaded_at": when, "bundle_sha256": lambda v: str(v)[:12]})


def promote(worker: str, version: str, ns: NsOpt = None,
            expected_version: Annotated[int | None, typer.Option(
                help="the worker version you saw (optimistic concurrency)")] = None,
            idempotency_key: IdemOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
            token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Make VERSION the active version of WORKER."""
    body: dict[str, Any] = {"version_id": version}
    if expected_version is not None:
        body["expected_version"] = expected_version
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"{_ws(namespace, worker)}/promote", body,
                             idempotency_key=idempotency_key)
    outcome(result, f"{namespace}/{worker} now serves {version}", as_json)


def rollback(worker: str, ns: NsOpt = None,
             to: Annotated[str | None, typer.Option("--to", help="version to activate "
                                                    "(default: the previous one)")] = None,
             reason: Annotated[str, typer.Option(help="recorded in the audit trail")] = "rollback",
             idempotency_key: IdemOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
             token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Activate the previous version (or --to a given one)."""
    body: dict[str, Any] = {"reason": reason}
    if to:
        body["to"] = to
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"{_ws(namespace, worker)}/rollback", body,
                             idempotency_key=idempotency_key)
    outcome(result, f"{namespace}/{worker} rolled back", as_json)


delete_app = typer.Typer(help="Delete a version, or a worker (soft; --purge: hard).",
                         no_args_is_help=True)


@delete_app.command("version")
def delete_version(worker: str, version: str, ns: NsOpt = None, as_json: JsonOpt = False,
                   url: UrlOpt = None, token: TokenOpt = None,
                   profile: ProfileOpt = None) -> None:
    """Delete an inactive version (refused while it is active)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.delete(f"{_ws(namespace, worker)}/versions/{version}")
    outcome(result, f"deleted version {version}", as_json)


@delete_app.command("tagged")
def delete_tagged(tag: Annotated[str, typer.Argument(help="the script tag")], ns: NsOpt = None,
                  as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                  profile: ProfileOpt = None) -> None:
    """Soft-delete every worker of the namespace with script tag TAG (each one an
    ordinary worker delete)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.request("DELETE", f"/v1/namespaces/{namespace}/workers",
                                params={"tag": tag})
    if as_json:
        print_json(result)
        return
    err.print(f"[green]ok[/] deleted {len(result['deleted'])} worker(s) of {namespace} "
              f"tagged {tag}: {', '.join(result['deleted']) or '-'}", highlight=False)
    for row in result["refused"]:
        err.print(f"[yellow]refused:[/] {row['worker']}: {row['verdict']['message']}",
                  highlight=False)


@delete_app.command("worker")
def delete_worker(worker: str, ns: NsOpt = None,
                  purge: Annotated[bool, typer.Option("--purge", help="also purge: metadata "
                                                      "and unreferenced bundles go")] = False,
                  as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                  profile: ProfileOpt = None) -> None:
    """Soft-delete a worker (stops routing); with --purge, hard-delete it too."""
    results: dict[str, Any] = {}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        doc = client.get(_ws(namespace, worker))
        if not doc.get("deleted"):
            results["delete"] = client.delete(_ws(namespace, worker))
        if purge:
            results["purge"] = client.post(f"{_ws(namespace, worker)}/purge")
    if as_json:
        print_json(results)
        return
    what = "purged" if purge else "deleted"
    err.print(f"[green]ok[/] {namespace}/{worker} {what}", highlight=False)
    if purge:
        err.print(f"  {results['purge'].get('blobs_deleted', 0)} blobs collected")


# --- secrets -------------------------------------------------------------------

secret_app = typer.Typer(help="Secrets of a namespace or a worker (values are write-only).",
                         no_args_is_help=True)


def _secrets_path(namespace: str, worker: str | None) -> str:
    base = f"/v1/namespaces/{namespace}"
    return f"{base}/workers/{worker}/secrets" if worker else f"{base}/secrets"


def _read_secret_value() -> str:
    if sys.stdin.isatty():
        value = typer.prompt("secret value", hide_input=True, confirmation_prompt=False)
    else:
        value = sys.stdin.read()
        value = value[:-1] if value.endswith("\n") else value
    if not value:
        raise fail("the secret value is empty", 2)
    return str(value)


@secret_app.command("put")
def secret_put(name: str, ns: NsOpt = None, worker: WorkerOpt = None, as_json: JsonOpt = False,
               url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Set a secret; the value is read from stdin, or a hidden prompt on a terminal."""
    value = _read_secret_value()
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.put(f"{_secrets_path(namespace, worker)}/{name}", {"value": value})
    outcome(result, f"secret {name} set", as_json)


@secret_app.command("list")
def secret_list(ns: NsOpt = None, worker: WorkerOpt = None, as_json: JsonOpt = False,
                url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Secret names (never values)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(_secrets_path(namespace, worker))
    if as_json:
        print_json(rows)
        return
    table(rows, [("name", "name"), ("key_id", "root key"), ("updated_at", "updated")],
          {"updated_at": when})


@secret_app.command("delete")
def secret_delete(name: str, ns: NsOpt = None, worker: WorkerOpt = None,
                  as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                  profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.delete(f"{_secrets_path(namespace, worker)}/{name}")
    outcome(result, f"secret {name} deleted", as_json)


# --- hosts ---------------------------------------------------------------------

hosts_app = typer.Typer(help="Custom host patterns routed to this namespace.",
                        no_args_is_help=True)
HOST_HINTS = {
    "host_claimed": "a host belongs to one namespace with every path under it; whoever "
                    "controls its DNS can take it: `wdl hosts verify HOST --show`",
    "host_reserved": "claim a DNS name of your own; the namespace host needs no claim",
    "host_not_verified": "publish the TXT record (`wdl hosts verify HOST --show`), wait for "
                         "it to be served, then verify again",
}


@hosts_app.command("list")
def hosts_list(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
               token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(f"/v1/namespaces/{namespace}/hosts")
    if as_json:
        print_json(rows)
        return
    table(rows, [("pattern", "pattern"), ("match", "match"), ("worker", "worker"),
                 ("verified", "verified")])


@hosts_app.command("claim")
def hosts_claim(pattern: str, ns: NsOpt = None,
                match: Annotated[str, typer.Option(help="exact or prefix")] = "exact",
                worker: Annotated[str | None, typer.Option("--worker", "-w")] = None,
                as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                profile: ProfileOpt = None) -> None:
    """Claim PATTERN (host with optional path) for the namespace, or one worker."""
    if match not in ("exact", "prefix"):
        raise fail("--match must be exact or prefix", 2)
    with connect(url, token, profile, ns, need_namespace=True,
                 hints=HOST_HINTS) as (client, namespace):
        result = client.post(f"/v1/namespaces/{namespace}/hosts",
                             {"pattern": pattern, "match": match, "worker": worker})
    outcome(result, f"claimed {pattern}", as_json)


@hosts_app.command("verify")
def hosts_verify(host: str, ns: NsOpt = None,
                 show: Annotated[bool, typer.Option(
                     "--show", help="print the TXT record to publish; check nothing")] = False,
                 as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                 profile: ProfileOpt = None) -> None:
    """Prove the namespace holds HOST's DNS: the TXT record _wdl-challenge.HOST must hold
    the namespace's challenge (--show prints it). Where verification is on (production),
    claims of HOST route only once proven; a proof also takes HOST from a namespace
    that holds it without one."""
    with connect(url, token, profile, ns, need_namespace=True,
                 hints=HOST_HINTS) as (client, namespace):
        if show:
            shown = client.get(f"/v1/namespaces/{namespace}/hosts/{host}/challenge")
            if as_json:
                print_json(shown)
            else:
                print(f"{shown['record']} TXT \"{shown['value']}\"")
            return
        result = client.post(f"/v1/namespaces/{namespace}/hosts/{host}/verify", {})
    outcome(result, f"verified {host} for namespace {namespace}", as_json)


@hosts_app.command("release")
def hosts_release(pattern: str, ns: NsOpt = None, as_json: JsonOpt = False,
                  url: UrlOpt = None, token: TokenOpt = None,
                  profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.delete(f"/v1/namespaces/{namespace}/hosts/{pattern}")
    outcome(result, f"released {pattern}", as_json)


# --- leases --------------------------------------------------------------------

lease_app = typer.Typer(help="Owner leases (operators).", no_args_is_help=True)


@lease_app.command("show")
def lease_show(scope: Annotated[str | None, typer.Argument()] = None, as_json: JsonOpt = False,
               url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """One lease, or all of them."""
    with connect(url, token, profile) as (client, _):
        found = client.get(f"/v1/leases/{scope}") if scope else client.get("/v1/leases")
    rows = [found] if scope else found
    if as_json:
        print_json(found)
        return
    table(rows, [("scope", "scope"), ("holder", "holder"), ("generation", "generation"),
                 ("expires_at", "expires"), ("released", "released")], {"expires_at": when})


@lease_app.command("takeover")
def lease_takeover(scope: str,
                   holder: Annotated[str, typer.Option(help="the new holder")],
                   ttl_ms: Annotated[int, typer.Option(help="lease duration")] = 30_000,
                   expected_generation: Annotated[int | None, typer.Option(
                       help="the generation you saw (default: the current one)")] = None,
                   as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                   profile: ProfileOpt = None) -> None:
    """Take a lease over, fencing its holder off (generation + 1)."""
    body: dict[str, Any] = {"holder": holder, "ttl_ms": ttl_ms}
    if expected_generation is not None:
        body["expected_generation"] = expected_generation
    with connect(url, token, profile) as (client, _):
        result = client.post(f"/v1/leases/{scope}/takeover", body)
    outcome(result, f"lease {scope} taken over by {holder}", as_json)


# --- audit ---------------------------------------------------------------------


def audit(ns: NsOpt = None,
          worker: Annotated[str | None, typer.Option("--worker", "-w")] = None,
          actor: Annotated[str | None, typer.Option()] = None,
          type_: Annotated[list[str] | None, typer.Option("--type", "--action",
                                                          help="event type or action")] = None,
          verdict: Annotated[str | None, typer.Option(
              help="accepted, rejected or a reason code")] = None,
          since: Annotated[int | None, typer.Option(help="unix ms")] = None,
          until: Annotated[int | None, typer.Option(help="unix ms")] = None,
          request_id: Annotated[str | None, typer.Option(
              "--request-id", help="only what that request appended (its X-Request-Id)")] = None,
          limit: Annotated[int, typer.Option(help="rows per page")] = 100,
          all_pages: Annotated[bool, typer.Option("--all", help="follow every page")] = False,
          as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
          profile: ProfileOpt = None) -> None:
    """Query the audit trail: every event with its verdict."""
    items: list[dict[str, Any]] = []
    with connect(url, token, profile, ns) as (client, namespace):
        cursor = None
        while True:
            page = client.get("/v1/audit", namespace=namespace or None, worker=worker,
                              actor=actor, type=type_ or None, verdict=verdict, since=since,
                              until=until, request_id=request_id, limit=limit,
                              cursor=cursor)
            items.extend(page["items"])
            cursor = page.get("next_cursor")
            if not all_pages or cursor is None:
                break
    if as_json:
        print_json(items)
        return
    table(items, [("occurred_at_ms", "time"), ("type", "event"), ("namespace", "ns"),
                  ("worker", "worker"), ("actor", "actor"), ("accepted", "accepted"),
                  ("code", "code")], {"occurred_at_ms": when})


# --- tokens --------------------------------------------------------------------

tokens_app = typer.Typer(help="API tokens (admin).", no_args_is_help=True)


@tokens_app.command("issue")
def tokens_issue(role: Annotated[str, typer.Option(help="admin, deployer or observer")],
                 namespace: Annotated[list[str] | None, typer.Option(
                     "--namespace", help="scope (repeatable)")] = None,
                 label: Annotated[str, typer.Option()] = "",
                 ttl: Annotated[int | None, typer.Option(help="seconds")] = None,
                 as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                 profile: ProfileOpt = None) -> None:
    """Issue a token; its secret is printed once, on stdout."""
    body: dict[str, Any] = {"role": role, "namespaces": namespace or [], "label": label}
    if ttl is not None:
        body["ttl_seconds"] = ttl
    with connect(url, token, profile) as (client, _):
        result = client.post("/v1/tokens", body)
    if as_json:
        print_json(result)
        return
    err.print(f"[green]ok[/] token {result['token_id']} ({role}); store it now, it is not "
              "shown again", highlight=False)
    typer.echo(result["token"])


@tokens_app.command("list")
def tokens_list(as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                profile: ProfileOpt = None) -> None:
    with connect(url, token, profile) as (client, _):
        rows = client.get("/v1/tokens")
    if as_json:
        print_json(rows)
        return
    table(rows, [("token_id", "id"), ("role", "role"), ("namespaces", "namespaces"),
                 ("label", "label"), ("issued_at", "issued"), ("revoked_at", "revoked")],
          {"issued_at": when, "revoked_at": when})


@tokens_app.command("revoke")
def tokens_revoke(token_id: str,
                  reason: Annotated[str, typer.Option()] = "",
                  as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                  profile: ProfileOpt = None) -> None:
    with connect(url, token, profile) as (client, _):
        result = client.delete(f"/v1/tokens/{token_id}", {"reason": reason})
    outcome(result, f"token {token_id} revoked", as_json)


# --- namespaces ----------------------------------------------------------------

ns_app = typer.Typer(help="Namespaces.", no_args_is_help=True)


@ns_app.command("create")
def ns_create(name: str, description: Annotated[str, typer.Option()] = "",
              as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
              profile: ProfileOpt = None) -> None:
    with connect(url, token, profile) as (client, _):
        result = client.post("/v1/namespaces", {"name": name, "description": description})
    outcome(result, f"namespace {name} created", as_json)


@ns_app.command("list")
def ns_list(as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
            profile: ProfileOpt = None) -> None:
    with connect(url, token, profile) as (client, _):
        rows = client.get("/v1/namespaces")
    if as_json:
        print_json(rows)
        return
    table(rows, [("name", "namespace"), ("description", "description"),
                 ("created_at", "created")], {"created_at": when})


cron_app = typer.Typer(help="Cron triggers and their runs.", no_args_is_help=True)


@cron_app.command("runs")
def cron_runs(worker: str, ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
              token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Recent cron slots of WORKER, newest first: claimed, ok, error, timeout or skipped
    (waited on the namespace's share too long); `late` says how late a run started."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(f"{_ws(namespace, worker)}/cron-runs")
    if as_json:
        print_json(rows)
        return
    table(rows, [("slot_ms", "slot"), ("cron", "cron"), ("status", "status"),
                 ("duration_ms", "ms"), ("late_ms", "late ms"), ("version_id", "version"),
                 ("holder", "replica"), ("error", "error")], {"slot_ms": when})


def register(app: typer.Typer) -> None:
    """Add the control-plane commands to the `wdl` app."""
    app.command("init")(scaffold.init)
    app.command("deploy")(deploy_cmd.deploy)
    app.command("whoami")(doctor_cmd.whoami)
    app.command("doctor")(doctor_cmd.doctor)
    app.command("workers")(workers)
    app.command("versions")(versions)
    app.command("promote")(promote)
    app.command("rollback")(rollback)
    app.command("audit")(audit)
    app.add_typer(delete_app, name="delete")
    app.add_typer(secret_app, name="secret")
    app.add_typer(hosts_app, name="hosts")
    app.add_typer(lease_app, name="lease")
    app.add_typer(tokens_app, name="tokens")
    policies.register(ns_app)
    app.add_typer(ns_app, name="ns")
    app.add_typer(cron_app, name="cron")


__all__ = ["ApiFailure", "register"]
