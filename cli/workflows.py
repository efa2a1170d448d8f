"""`wdl workflows list|instances|status|pause|resume|terminate|restart|send-event`."""

from __future__ import annotations

import json
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
    print_json,
    table,
    when,
)

app = typer.Typer(help="Workflows and their instances (docs/workflows.md).",
                  no_args_is_help=True)
WorkflowArg = Annotated[str, typer.Argument(help="the workflow's name (wrangler `name`)")]
InstanceArg = Annotated[str, typer.Argument(help="the instance id")]


def _base(namespace: str, workflow: str) -> str:
    return f"/v1/namespaces/{namespace}/workflows/{workflow}/instances"


@app.command("list")
def list_(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
          token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Workflows of the namespace that have instances, with counts by status."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(f"/v1/namespaces/{namespace}/workflows")
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no workflow instances")
        return
    table([{**r, "statuses": " ".join(f"{k}={v}" for k, v in sorted(r["by_status"].items()))}
           for r in rows],
          [("workflow", "workflow"), ("worker", "worker"), ("class_name", "class"),
           ("instances", "instances"), ("statuses", "by status")])


@app.command("instances")
def instances(workflow: WorkflowArg, status: Annotated[str | None, typer.Option(
                  "--status", help="only instances in this status")] = None,
              ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
              token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Instances of a workflow, oldest first."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(_base(namespace, workflow), status=status)
    if as_json:
        print_json(rows)
        return
    if not rows:
        typer.echo("no instances")
        return
    table([{**r, "created": when(r.get("created_at")), "updated": when(r.get("updated_at"))}
           for r in rows],
          [("id", "id"), ("status", "status"), ("version", "version"), ("steps", "steps"),
           ("created", "created"), ("updated", "updated")])


@app.command("status")
def status(workflow: WorkflowArg, instance: InstanceArg, ns: NsOpt = None,
           as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
           profile: ProfileOpt = None) -> None:
    """One instance: status, output or error, what it waits for."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        doc = client.get(f"{_base(namespace, workflow)}/{instance}")
    if as_json:
        print_json(doc)
        return
    typer.echo(f"{doc['id']}  {doc['status']}  (version {doc['version']}, "
               f"{doc['steps']} steps recorded)")
    if doc.get("pending"):
        p = doc["pending"]
        typer.echo(f"  waits: {p['kind']} {p['key']} until {when(p.get('until'))}")
    if doc.get("error"):
        typer.echo(f"  error: {doc['error'].get('name')}: {doc['error'].get('message')}")
    if doc.get("output") is not None:
        typer.echo(f"  output: {json.dumps(doc['output'])}")


def _control(op: str) -> Any:
    def command(workflow: WorkflowArg, instance: InstanceArg, ns: NsOpt = None,
                as_json: JsonOpt = False, url: UrlOpt = None, token: TokenOpt = None,
                profile: ProfileOpt = None) -> None:
        with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
            result = client.post(f"{_base(namespace, workflow)}/{instance}/{op}")
        if as_json:
            print_json(result)
        else:
            typer.echo(f"ok {namespace}/{workflow}/{instance}: {op}")
    command.__doc__ = {"pause": "Pause an instance at its next step boundary.",
                       "resume": "Resume a paused instance.",
                       "terminate": "End an instance for good (restart may run it again).",
                       "restart": "Run an instance again from the start, on its version."}[op]
    return command


for _op in ("pause", "resume", "terminate", "restart"):
    app.command(_op)(_control(_op))


@app.command("send-event")
def send_event(workflow: WorkflowArg, instance: InstanceArg,
               event_type: Annotated[str, typer.Option("--type", help="the event type")],
               payload: Annotated[str, typer.Option(
                   "--payload", help="JSON payload (default null)")] = "null",
               ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
               token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Send an event to an instance (a step.waitForEvent of that type receives it)."""
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise fail(f"--payload is not JSON: {exc}", 2) from None
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"{_base(namespace, workflow)}/{instance}/events",
                             {"type": event_type, "payload": value})
    if as_json:
        print_json(result)
    else:
        typer.echo(f"ok {namespace}/{workflow}/{instance}: event {event_type} sent")
