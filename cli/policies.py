"""`wdl ns egress show|set` and `wdl ns grant|revoke|grants`: namespace policies."""

from __future__ import annotations

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

egress_app = typer.Typer(help="The namespace's outbound network policy.", no_args_is_help=True)


@egress_app.command("show")
def egress_show(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
                token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        policy = client.get(f"/v1/namespaces/{namespace}/egress")
    if as_json:
        print_json(policy)
        return
    typer.echo(f"mode: {policy['mode']}")
    for rule in policy.get("allow") or []:
        ports = ",".join(str(p) for p in rule.get("ports") or []) or "any port"
        typer.echo(f"allow: {rule['host']} ({ports})")


def _rule(text: str) -> dict[str, object]:
    host, _, ports = text.partition(":")
    try:
        return {"host": host, "ports": [int(p) for p in ports.split(",") if p]}
    except ValueError:
        raise fail(f"--allow {text!r}: expected HOST or HOST:PORT[,PORT…]", 2) from None


@egress_app.command("set")
def egress_set(
    mode: Annotated[str, typer.Argument(help="deny | public | allow")],
    allow: Annotated[list[str] | None, typer.Option(
        "--allow", help="with mode allow: HOST or *.DOMAIN, optionally :PORT[,PORT…]; "
        "repeatable")] = None,
    ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
    token: TokenOpt = None, profile: ProfileOpt = None,
) -> None:
    """Replace the policy (admin). Loopback, private, link-local and metadata addresses
    are refused whatever the policy says."""
    body = {"mode": mode, "allow": [_rule(a) for a in allow or []]}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.put(f"/v1/namespaces/{namespace}/egress", body)
    outcome(result, f"egress policy of {namespace} is now {mode}", as_json)


limits_app = typer.Typer(help="Per-request budgets of the namespace's workers and its fair "
                         "shares of the shared engines.", no_args_is_help=True)

DEFAULT_SUBREQUESTS = 1000  # as services/api/routes/policies.py shows it

# The fair shares (services/fairshare.py), as `wdl ns limits` shows and sets them.
SHARES = (("workflow_slots", "workflow invocations in flight"),
          ("queue_batches", "queue batches in delivery"),
          ("cron_runs", "cron runs in flight"),
          ("tails", "open tail sessions"),
          ("hyperdrive_connections", "Hyperdrive server connections"))


@limits_app.command("show")
def limits_show(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
                token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        limits = client.get(f"/v1/namespaces/{namespace}/limits")
    if as_json:
        print_json(limits)
        return
    wall = f"{limits['wall_ms']} ms" if limits["wall_ms"] else "none"
    typer.echo(f"wall time per request: {wall}")
    typer.echo(f"subrequests per request: {limits['subrequests']}"
               + ("" if limits["set"] else " (platform default)"))
    for key, what in SHARES:
        value = limits.get(key) or 0
        typer.echo(f"{what}: {value if value else 'the engine default'}")


def _share_opt(flag: str, what: str) -> Any:
    return typer.Option(flag, min=0, max=4096, help=f"{what} at once; 0: the engine default")


@limits_app.command("set")
def limits_set(
    wall_ms: Annotated[int | None, typer.Option(
        "--wall-ms", min=0, help="wall-time budget of one request; 0: none")] = None,
    subrequests: Annotated[int | None, typer.Option(
        "--subrequests", min=0, help="outbound fetches per request; 0: default")] = None,
    workflow_slots: Annotated[int | None, _share_opt("--workflow-slots",
                                                     "workflow invocations")] = None,
    queue_batches: Annotated[int | None, _share_opt("--queue-batches", "queue batches")] = None,
    cron_runs: Annotated[int | None, _share_opt("--cron-runs", "cron runs")] = None,
    tails: Annotated[int | None, _share_opt("--tails", "open tail sessions")] = None,
    hyperdrive_connections: Annotated[int | None, _share_opt(
        "--hyperdrive-connections", "Hyperdrive server connections")] = None,
    ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
    token: TokenOpt = None, profile: ProfileOpt = None,
) -> None:
    """Change budgets and shares (admin); what is not given keeps its value.

    CPU is bounded platform-wide by the watchdog.
    """
    given = {"wall_ms": wall_ms, "subrequests": subrequests, "workflow_slots": workflow_slots,
             "queue_batches": queue_batches, "cron_runs": cron_runs, "tails": tails,
             "hyperdrive_connections": hyperdrive_connections}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        current = client.get(f"/v1/namespaces/{namespace}/limits")
        body = {k: int(current.get(k) or 0) for k in given}
        # The API shows the default (1000) when none is set: the same as 0, kept as 0.
        if body["subrequests"] == DEFAULT_SUBREQUESTS:
            body["subrequests"] = 0
        body.update({k: v for k, v in given.items() if v is not None})
        result = client.put(f"/v1/namespaces/{namespace}/limits", body)
    outcome(result, f"limits of {namespace} set", as_json)


WorkerGrantOpt = Annotated[str, typer.Option("--worker", help="one worker, or * for all")]


def grant(to: Annotated[str, typer.Argument(help="the namespace that may call")],
          worker: WorkerGrantOpt = "*", ns: NsOpt = None, as_json: JsonOpt = False,
          url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Let namespace TO bind this namespace's worker(s) as service bindings."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"/v1/namespaces/{namespace}/grants", {"to": to, "worker": worker})
    outcome(result, f"{to} may call {namespace}/{worker}", as_json)


def revoke(to: Annotated[str, typer.Argument(help="the namespace whose access ends")],
           worker: Annotated[str | None, typer.Option(
               "--worker", help="only this grant (a worker, or * for the grant of every "
               "worker); default: every grant to TO")] = None,
           ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
           token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Take back namespace TO's access: every grant to it, or with --worker that one grant.
    Says what was revoked and what, if anything, still lets TO call this namespace."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        before = _grants_to(client.get(f"/v1/namespaces/{namespace}/grants"), to)
        params = {} if worker is None else {"worker": worker}
        result = client.request("DELETE", f"/v1/namespaces/{namespace}/grants/{to}",
                                params=params)
        left = _grants_to(client.get(f"/v1/namespaces/{namespace}/grants"), to)
    if as_json:
        print_json({**result, "revoked": [w for w in before if w not in left],
                    "remaining": left})
        return
    revoked = [w for w in before if w not in left]
    outcome(result, f"{to} may no longer call {namespace}/"
            f"{', '.join(revoked) if revoked else (worker or '*')}", as_json)
    if left:
        typer.echo(f"{to} still holds grants for {namespace}/{', '.join(left)} "
                   f"(revoke them with `wdl ns revoke {to} --ns {namespace}`)", err=True)


def _grants_to(rows: list[dict[str, str]], to: str) -> list[str]:
    return [g["worker"] for g in rows if g.get("namespace") == to]


def grants(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
           token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(f"/v1/namespaces/{namespace}/grants")
    if as_json:
        print_json(rows)
        return
    table(rows, [("namespace", "granted to"), ("worker", "worker")])


def register(ns_app: typer.Typer) -> None:
    ns_app.add_typer(egress_app, name="egress")
    ns_app.add_typer(limits_app, name="limits")
    ns_app.command("grant")(grant)
    ns_app.command("revoke")(revoke)
    ns_app.command("grants")(grants)
