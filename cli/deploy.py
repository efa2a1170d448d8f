"""`wdl deploy [DIR]`: bundle a wrangler project and upload it as a new version."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from cli.assets import AssetsConfigError, AssetsProject
from cli.assets import upload as upload_assets
from cli.client import ApiFailure, ControlClient
from cli.common import JsonOpt, NsOpt, ProfileOpt, TokenOpt, UrlOpt, connect, err, print_json
from cli.d1 import provision_d1
from cli.queues import provision as provision_queues
from cli.queues import set_consumers
from cli.redirect import project_directory
from cli.resources import provision
from cli.wrangler import (
    BuiltModule,
    Project,
    ProjectError,
    bundle,
    deploy_warnings,
    read_d1_databases,
    read_project,
    split_vars,
)
from eventlog import validation as v
from eventlog.errors import InvalidEvent
from eventlog.events.version_meta import MESSAGE_MAX, TAG_MAX, printable
from eventlog.events.workers import script_tags
from services.runtime_compat import CompatibilityError, check_compatibility

CHUNK = 64 * 1024
NS_HINT = ("create it with `wdl ns create {namespace}`, or deploy with --create-namespace "
           "(both need an admin token)")


def ensure_namespace(client: ControlClient, namespace: str, *, quiet: bool) -> None:
    """Create the namespace unless it exists (`namespace_exists` is fine)."""
    try:
        client.post("/v1/namespaces", {"name": namespace, "description": ""})
    except ApiFailure as exc:
        if exc.code != "namespace_exists":
            raise
        return
    if not quiet:
        err.print(f"[green]created[/] namespace {namespace}", highlight=False)


def _request_body(project: Project, no_bundle: bool,
                  ) -> tuple[str, dict[str, Any], str, AssetsProject | None]:
    if no_bundle:
        project.no_bundle = True
    if project.main:
        main, modules, how = bundle(project)
    else:
        main, modules, how = "", [], "assets only"
    plain_vars, bindings = split_vars(project.vars)
    precheck(project.compatibility_date, project.compatibility_flags, project.crons,
             bindings + project.bindings, plain_vars, modules)
    body: dict[str, Any] = {
        "main_module": main,
        "modules": [{"name": m.name, "type": m.type,
                     "content_b64": base64.b64encode(m.content).decode("ascii")}
                    for m in modules],
        "compatibility_date": project.compatibility_date,
        "compatibility_flags": project.compatibility_flags,
        "vars": plain_vars,
        "bindings": bindings + project.bindings,
        "cron_triggers": project.crons,
    }
    # Sent only when set: a deploy without them is the request it always was.
    if project.routes:
        body["routes"] = project.routes
    if not project.workers_dev:
        body["workers_dev"] = False
    if project.tail_consumers:
        body["tail_consumers"] = project.tail_consumers
    for warning in project.assets.warnings if project.assets else ():
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    return project.name, body, how, project.assets


def precheck(date: str, flags: list[str], crons: list[str], bindings: list[dict[str, str]],
             plain_vars: dict[str, str], modules: list[BuiltModule]) -> None:
    """The control API's rules for names, crons and compatibility, applied before anything
    is sent: a deploy it would refuse must not provision KV namespaces, buckets, queues or
    databases on the way (the API checks all of it again; it is the arbiter)."""
    try:
        for name in plain_vars:
            v.secret_name(f"vars.{name}", name)
        for b in bindings:
            v.secret_name(f"bindings.{b['name']}", b["name"])
            if b.get("entrypoint"):
                v.entrypoint(f"bindings.{b['name']}.entrypoint", b["entrypoint"])
            if b.get("kind") == "durable_object":
                v.entrypoint(f"bindings.{b['name']}.class_name", b.get("target", ""))
        for module in modules:
            v.not_reserved(f"modules.{module.name}", module.name, "module names")
        v.crons("triggers.crons", crons)
        v.distinct_schedules("triggers.crons", crons)
        v.compatibility_date("compatibility_date", date)
        v.compatibility_flags("compatibility_flags", flags)
        check_compatibility(date, flags)
    except InvalidEvent as exc:
        raise ProjectError(f"{exc.code}: {exc.message}") from None
    except CompatibilityError as exc:
        raise ProjectError(f"{exc.code}: {exc.message}") from None


def version_annotations(tag: str, message: str) -> dict[str, str]:
    """`--tag` / `--message` as the request's fields (checked as the API will)."""
    try:
        printable("--tag", tag, TAG_MAX)
        printable("--message", message, MESSAGE_MAX)
    except InvalidEvent as exc:
        raise ProjectError(f"{exc.code}: {exc.message}") from None
    return {k: val for k, val in (("tag", tag), ("message", message)) if val}


def dispatch_target(ns: str | None, dispatch_namespace: str) -> str:
    """`--dispatch-namespace NS`: the namespace the user worker goes into (a token scoped
    to NS deploys there as into any namespace; `--ns`, if given too, must agree)."""
    if ns is not None and ns != dispatch_namespace:
        raise ProjectError(f"--ns {ns} and --dispatch-namespace {dispatch_namespace} name "
                           "different namespaces")
    return dispatch_namespace


def check_script_tags(tags: list[str]) -> list[str]:
    """A user worker's `--tag`s, checked as the API will (Cloudflare: at most 8)."""
    try:
        script_tags("--tag", tags)
    except InvalidEvent as exc:
        raise ProjectError(str(exc)) from None
    return tags


def _chunks(raw: bytes, progress: Progress, task: Any) -> Iterator[bytes]:
    for i in range(0, len(raw), CHUNK):
        piece = raw[i:i + CHUNK]
        yield piece
        progress.advance(task, len(piece))


def deploy(
    directory: Annotated[Path, typer.Argument(help="project directory")] = Path("."),
    ns: NsOpt = None,
    env_name: Annotated[str | None, typer.Option(
        "--env", "-e", help="a wrangler environment ([env.NAME]): its keys over the top "
        "level's, as wrangler does; the worker is `<name>-<env>` unless it sets `name`")] = None,
    name: Annotated[str | None, typer.Option("--name", help="worker name "
                                             "(default: `name` of the wrangler config)")] = None,
    no_promote: Annotated[bool, typer.Option("--no-promote", help="upload only (stage)")] = False,
    no_bundle: Annotated[bool, typer.Option("--no-bundle", help="upload the modules as "
                                            "they are, without Wrangler")] = False,
    no_provision: Annotated[bool, typer.Option(
        "--no-provision", help="do not create missing KV namespaces, R2 buckets and queues "
        "(deploy is then refused if one is missing)")] = False,
    create_namespace: Annotated[bool, typer.Option(
        "--create-namespace", help="create the namespace first if it does not exist "
        "(needs an admin token)")] = False,
    idempotency_key: Annotated[str | None, typer.Option("--idempotency-key")] = None,
    tag: Annotated[list[str] | None, typer.Option(
        "--tag", help="a tag for this version (at most 25 characters; the version_metadata "
        "binding's `tag`); with --dispatch-namespace: a tag of the user worker (repeatable, "
        "at most 8)")] = None,
    dispatch_namespace: Annotated[str | None, typer.Option(
        "--dispatch-namespace", help="deploy a user worker into this dispatch namespace "
        "(Workers for Platforms, docs/platforms.md): served through dispatchers only, "
        "unless it has routes")] = None,
    message: Annotated[str, typer.Option("--message", help="a message for this version "
                                         "(at most 100 characters)")] = "",
    as_json: JsonOpt = False,
    url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None,
) -> None:
    """Bundle (wrangler --dry-run) and upload a version; promote it unless --no-promote."""
    try:
        # A framework's build names the config to deploy, as `wrangler deploy` honours.
        directory, redirected = project_directory(directory.resolve())
        if redirected is not None and not as_json:
            err.print(f"using the redirected config {redirected} (from "
                      ".wrangler/deploy/config.json), as wrangler deploy does", highlight=False)
        project = read_project(directory, env_name)
        project_name, body, how, assets = _request_body(project, no_bundle)
        consumers = project.queue_consumers
        d1_entries = read_d1_databases(project.doc, "")
        warnings = deploy_warnings(project, how)
        tags = list(tag or [])
        if dispatch_namespace is not None:
            ns = dispatch_target(ns, dispatch_namespace)
            # A user worker has no namespace URL (Cloudflare: no workers.dev for it).
            body["workers_dev"] = False
            body.update(version_annotations("", message))
            script_tags = check_script_tags(tags)
        else:
            if len(tags) > 1:
                raise ProjectError("--tag names one version tag (repeat it only with "
                                   "--dispatch-namespace, for a user worker's tags)")
            body.update(version_annotations(tags[0] if tags else "", message))
            script_tags = None
    except ProjectError as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    worker = name or project_name
    asset_stats: dict[str, int] | None = None
    with connect(url, token, profile, ns, need_namespace=True,
                 hints={"namespace_not_found": NS_HINT}) as (client, namespace):
        if create_namespace:
            ensure_namespace(client, namespace, quiet=as_json)
        if assets is not None:
            try:
                body["assets"], asset_stats = upload_assets(client, namespace, assets,
                                                            quiet=as_json)
            except AssetsConfigError as exc:
                err.print(f"[red]error:[/] {exc}", highlight=False)
                raise typer.Exit(2) from None
        raw = json.dumps(body).encode("utf-8")
        missing = provision(client, namespace, body["bindings"], create=not no_provision,
                            quiet=as_json)
        missing += provision_queues(client, namespace, body["bindings"], consumers,
                                    create=not no_provision, quiet=as_json)
        missing += provision_d1(client, namespace, directory.resolve(), body["bindings"],
                                create=not no_provision, quiet=as_json, entries=d1_entries)
        if no_provision and missing:
            names = ", ".join(f"{m['kind']} {m['name']}" for m in missing)
            err.print(f"[red]refused:[/] binding_target_missing: {names} "
                      f"{'does' if len(missing) == 1 else 'do'} not exist in {namespace}; "
                      "create with `wdl kv namespace create` / `wdl r2 bucket create` / "
                      "`wdl d1 create`, or "
                      "deploy without --no-provision", highlight=False)
            raise typer.Exit(1)
        path = f"/v1/namespaces/{namespace}/workers/{worker}/versions"
        with Progress(TextColumn(f"upload {worker} ({len(body['modules'])} modules, {how})"),
                      BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err,
                      disable=as_json or not err.is_terminal) as progress:
            task = progress.add_task("upload", total=len(raw))
            headers = {"Content-Length": str(len(raw))}
            if idempotency_key:
                headers["Idempotency-Key"] = idempotency_key
            result = client.request(
                "POST", path, params={"promote": "false" if no_promote else "true"},
                content=_chunks(raw, progress, task), headers=headers)
        # A consumer names the worker, which exists once its first version is uploaded.
        set_consumers(client, namespace, worker, consumers, quiet=as_json)
        if script_tags is not None:
            result["tags"] = client.request(
                "PUT", f"/v1/namespaces/{namespace}/workers/{worker}/tags",
                json_body={"tags": script_tags})["tags"]
    if asset_stats is not None:
        result["assets"] = {**(result.get("assets") or {}), **asset_stats}
    if as_json:
        print_json(result)
        return
    for warning in result.get("warnings") or ():
        err.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for warning in (result.get("assets") or {}).get("warnings") or ():
        err.print(f"[yellow]warning:[/] assets: {warning}", highlight=False)
    state = "promoted" if result.get("promote") else "uploaded (not promoted)"
    err.print(f"[green]ok[/] {namespace}/{worker} version {result['version_id']} {state}",
              highlight=False)
    for route in result.get("routes") or ():
        pending = "" if route.get("routes_now") else (
            " - routes once the host is proven (`wdl hosts verify`)")
        err.print(f"route {route['route']}: claimed {route['pattern']} ({route['match']})"
                  f"{pending}", highlight=False)
    if result.get("pruned_version"):
        err.print(f"the worker keeps its newest versions: deleted the oldest, "
                  f"{result['pruned_version']}", highlight=False)
    typer.echo(result["version_id"])
