"""`wdl queues create|list|delete`, `wdl queues consumer add|remove`, and deploy's
provisioning of the queues and consumers a wrangler project names (docs/queues.md)."""

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

app = typer.Typer(help="Queues of a namespace: producers bind them, one worker consumes each "
                  "(control state: each change is an event).", no_args_is_help=True)
consumer_app = typer.Typer(help="The worker whose queue() handler consumes a queue.",
                           no_args_is_help=True)
app.add_typer(consumer_app, name="consumer")
dlq_app = typer.Typer(help="Messages a dead-letter queue holds: list them, move them back.",
                      no_args_is_help=True)
app.add_typer(dlq_app, name="dlq")

ForceOpt = Annotated[bool, typer.Option("--force", help="delete even if an active version "
                                        "binds it or a consumer dead-letters into it")]


def _path(namespace: str, queue: str = "") -> str:
    return f"/v1/namespaces/{namespace}/queues" + (f"/{queue}" if queue else "")


def provision(client: ControlClient, namespace: str, bindings: list[dict[str, str]],
              consumers: list[dict[str, Any]], *, create: bool,
              quiet: bool = False) -> list[dict[str, str]]:
    """Create the queues producers, consumers and dead-letter queues name that do not exist.

    Returns what is missing; with `create=False` nothing is created.
    """
    wanted = {b["target"] for b in bindings if b["kind"] == "queue"}
    for c in consumers:
        wanted.add(c["queue"])
        if c.get("dead_letter_queue"):
            wanted.add(c["dead_letter_queue"])
    if not wanted:
        return []
    have = {row["name"] for row in client.get(_path(namespace))}
    missing = [{"kind": "queue", "name": name} for name in sorted(wanted - have)]
    if create:
        for item in missing:
            client.post(_path(namespace), {"name": item["name"]})
            if not quiet:
                err.print(f"[green]provisioned[/] queue {item['name']} in {namespace}",
                          highlight=False)
    return missing


def set_consumers(client: ControlClient, namespace: str, worker: str,
                  consumers: list[dict[str, Any]], *, quiet: bool = False) -> None:
    """Make `worker` the consumer of each `queues.consumers` entry (settings replaced)."""
    for c in consumers:
        body = {k: v for k, v in c.items() if k != "queue"}
        client.put(f"{_path(namespace, c['queue'])}/consumer", {"worker": worker, **body})
        if not quiet:
            err.print(f"[green]consumer[/] {worker} consumes queue {c['queue']}",
                      highlight=False)


@app.command("create")
def create(name: str, delivery_delay: Annotated[int, typer.Option(
               "--delivery-delay", help="seconds each message waits before delivery")] = 0,
           ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
           token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(_path(namespace), {"name": name, "delivery_delay": delivery_delay})
    outcome(result, f"queue {name} created in {namespace}", as_json)


@app.command("list")
def list_(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
          token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows: list[dict[str, Any]] = client.get(_path(namespace))
    if as_json:
        print_json(rows)
        return
    for row in rows:
        c = row.get("consumer") or {}
        row["consumer_worker"] = c.get("worker", "")
        row["dlq"] = c.get("dead_letter_queue", "")
    table(rows, [("name", "queue"), ("consumer_worker", "consumer"), ("dlq", "dead letters"),
                 ("delivery_delay", "delay s"), ("created_at", "created")],
          {"created_at": when})


@app.command("delete")
def delete(name: str, ns: NsOpt = None, force: ForceOpt = False, as_json: JsonOpt = False,
           url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Delete it, its consumer and its messages; refused while bound, unless --force."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.request("DELETE", _path(namespace, name),
                                params={"force": "true" if force else None})
    outcome(result, f"queue {name} deleted from {namespace}", as_json)


@consumer_app.command("add")
def consumer_add(
    queue: str, worker: str,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100)] = 10,
    batch_timeout: Annotated[int, typer.Option("--batch-timeout", min=0, max=60,
                                               help="seconds to wait for a full batch")] = 5,
    message_retries: Annotated[int, typer.Option("--message-retries", min=0, max=100)] = 3,
    retry_delay: Annotated[int, typer.Option("--retry-delay-secs", min=0)] = 0,
    dead_letter_queue: Annotated[str, typer.Option("--dead-letter-queue")] = "",
    max_concurrency: Annotated[int, typer.Option("--max-concurrency", min=0, max=250)] = 0,
    ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
    token: TokenOpt = None, profile: ProfileOpt = None,
) -> None:
    """Make WORKER consume QUEUE (or change its settings); flags follow wrangler's."""
    body = {"worker": worker, "max_batch_size": batch_size, "max_batch_timeout": batch_timeout,
            "max_retries": message_retries, "retry_delay": retry_delay,
            "dead_letter_queue": dead_letter_queue, "max_concurrency": max_concurrency}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.put(f"{_path(namespace, queue)}/consumer", body)
    outcome(result, f"{worker} consumes queue {queue} in {namespace}", as_json)


@consumer_app.command("remove")
def consumer_remove(queue: str, worker: str, ns: NsOpt = None, as_json: JsonOpt = False,
                    url: UrlOpt = None, token: TokenOpt = None,
                    profile: ProfileOpt = None) -> None:
    """Stop WORKER consuming QUEUE (messages wait for the next consumer)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.request("DELETE", f"{_path(namespace, queue)}/consumer",
                                params={"worker": worker})
    outcome(result, f"{worker} no longer consumes queue {queue} in {namespace}", as_json)


@dlq_app.command("list")
def dlq_list(queue: str, limit: Annotated[int, typer.Option("--limit", min=1, max=1000)] = 100,
             ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
             token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Messages held for QUEUE (a dead-letter queue without a consumer keeps them)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        doc = client.get(f"{_path(namespace, queue)}/messages", limit=limit)
    rows: list[dict[str, Any]] = doc["messages"]
    if as_json:
        print_json(rows)
        return
    table(rows, [("id", "id"), ("timestamp", "sent"), ("attempts", "attempts"),
                 ("content_type", "type"), ("size", "bytes")], {"timestamp": when})


@dlq_app.command("redrive")
def dlq_redrive(queue: str, to: Annotated[str, typer.Option(
                    "--to", help="default: the queue whose consumer dead-letters into QUEUE")] = "",
                ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
                token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Move QUEUE's held messages back (attempts start again at 1)."""
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"{_path(namespace, queue)}/redrive", {"to": to})
    if as_json:
        print_json(result)
        return
    err.print(f"[green]moved[/] {result['moved']} messages from {queue} to {result['to']}",
              highlight=False)
