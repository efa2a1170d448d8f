"""`wdl d1 …`: D1 databases of a namespace, their SQL, migrations and backups.

Everything goes through the control API (services/api/routes/d1.py); rows are
read and written by the database's owner replica. DB is the database name, or
the binding name of a `d1_databases` entry of the wrangler project in --project.
Migrations are the `.sql` files of the entry's `migrations_dir` (default
`migrations/`), applied in name order and recorded in the database's
`d1_migrations` table as wrangler does.
"""

from __future__ import annotations

from pathlib import Path
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
    fail,
    outcome,
    print_json,
    table,
    when,
)
from cli.wrangler import ProjectError, find_config, read_config, read_d1_databases
from eventlog.events.d1 import UUID_RE

app = typer.Typer(help="D1 databases (SQLite, one owner replica each; docs/d1.md).",
                  no_args_is_help=True)
migrations_app = typer.Typer(help="Wrangler migrations of a D1 database.",
                             no_args_is_help=True)
app.add_typer(migrations_app, name="migrations")

Db = Annotated[str, typer.Argument(help="database name (or its binding in the project)")]
ProjectOpt = Annotated[Path, typer.Option("--project", help="wrangler project directory "
                                          "(binding names, migrations_dir)")]
ForceOpt = Annotated[bool, typer.Option("--force", help="delete even if an active version "
                                        "binds it (its calls then fail)")]


def _entries(project: Path) -> list[dict[str, str]]:
    try:
        find_config(project)
    except ProjectError:
        return []
    try:
        doc, name = read_config(project)
        return read_d1_databases(doc, name)
    except ProjectError as exc:
        raise fail(str(exc), 2) from None


def _resolve(db: str, project: Path) -> tuple[str, dict[str, str] | None]:
    for entry in _entries(project):
        if db in (entry["binding"], entry["database_name"]):
            return entry["database_name"], entry
    return db, None


def _base(namespace: str, name: str) -> str:
    return f"/v1/namespaces/{namespace}/d1/{name}"


def provision_d1(client: ControlClient, namespace: str, project: Path,
                 bindings: list[dict[str, str]], *, create: bool,
                 quiet: bool = False,
                 entries: list[dict[str, str]] | None = None) -> list[dict[str, str]]:
    """Create the D1 databases the bindings name that do not exist yet (with the
    project's `database_id` when it is a uuid). Returns what was missing.

    `database_id` may be any string in a wrangler project (placeholders such as
    "local-db" are common with `wrangler dev`): a database is named by its namespace and
    `database_name`, and an id that is no uuid is never sent (the platform gives the
    database one), so it reaches neither the log nor a file name."""
    wanted = sorted({b["target"] for b in bindings if b["kind"] == "d1"})
    if not wanted:
        return []
    have = {row["name"] for row in client.get(f"/v1/namespaces/{namespace}/d1")}
    ids = {e["database_name"]: e["database_id"]
           for e in (_entries(project) if entries is None else entries)}
    missing = [{"kind": "d1", "name": name} for name in wanted if name not in have]
    if create:
        for item in missing:
            given = ids.get(item["name"], "")
            result = client.post(f"/v1/namespaces/{namespace}/d1",
                                 {"name": item["name"],
                                  "database_id": given if UUID_RE.fullmatch(given) else ""})
            if not quiet:
                err.print(f"[green]provisioned[/] D1 database {item['name']} "
                          f"({result.get('database_id')}) in {namespace}", highlight=False)
    return missing


@app.command("create")
def create(name: str, database_id: Annotated[str, typer.Option(
               "--database-id", help="uuid (default: a new one)")] = "",
           ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
           token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"/v1/namespaces/{namespace}/d1",
                             {"name": name, "database_id": database_id})
    outcome(result, f"D1 database {name} ({result.get('database_id')}) created in "
            f"{namespace}", as_json)


@app.command("list")
def list_(ns: NsOpt = None, as_json: JsonOpt = False, url: UrlOpt = None,
          token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(f"/v1/namespaces/{namespace}/d1")
    if as_json:
        print_json(rows)
        return
    for row in rows:
        row["migrations"] = len(row.get("migrations") or [])
    table(rows, [("name", "database"), ("database_id", "id"), ("migrations", "migrations"),
                 ("created_at", "created"), ("created_by", "by")], {"created_at": when})


@app.command("delete")
def delete(db: Db, ns: NsOpt = None, force: ForceOpt = False, as_json: JsonOpt = False,
           project: ProjectOpt = Path("."), url: UrlOpt = None, token: TokenOpt = None,
           profile: ProfileOpt = None) -> None:
    """Delete it; refused while an active version binds it, unless --force."""
    name, _ = _resolve(db, project)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.request("DELETE", _base(namespace, name),
                                params={"force": "true" if force else None})
    outcome(result, f"D1 database {name} deleted from {namespace}", as_json)


def _print_results(results: list[dict[str, Any]]) -> None:
    for i, r in enumerate(results):
        rows = r.get("results") or {"columns": [], "rows": []}
        meta = r.get("meta") or {}
        if rows["columns"]:
            table([dict(zip(rows["columns"], row, strict=True)) for row in rows["rows"]],
                  [(c, c) for c in rows["columns"]])
        err.print(f"[dim]statement {i + 1}: {meta.get('changes', 0)} changed, "
                  f"{len(rows['rows'])} rows, {meta.get('duration', 0):.2f} ms[/]",
                  highlight=False)


@app.command("execute")
def execute(db: Db, command: Annotated[str | None, typer.Option(
                "--command", help="SQL to run (one or more statements)")] = None,
            file: Annotated[Path | None, typer.Option("--file", help="a .sql file")] = None,
            ns: NsOpt = None, as_json: JsonOpt = False, project: ProjectOpt = Path("."),
            url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Run SQL against the database; all statements commit together or not at all."""
    if (command is None) == (file is None):
        raise fail("give exactly one of --command and --file", 2)
    try:
        sql = command if command is not None else file.read_text(encoding="utf-8")  # type: ignore[union-attr]
    except OSError as exc:
        raise fail(f"cannot read {file}: {exc}", 2) from None
    name, _ = _resolve(db, project)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        results = client.post(f"{_base(namespace, name)}/execute", {"sql": sql})
    if as_json:
        print_json([{"results": [dict(zip(r["results"]["columns"], row, strict=True))
                                 for row in r["results"]["rows"]],
                     "success": r["success"], "meta": r["meta"]} for r in results])
        return
    _print_results(results)


@app.command("export")
def export(db: Db, output: Annotated[Path | None, typer.Option(
               "--output", help="write the SQL here (default: stdout)")] = None,
           ns: NsOpt = None, project: ProjectOpt = Path("."), url: UrlOpt = None,
           token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """The database as SQL statements (schema and rows), like `wrangler d1 export`."""
    name, _ = _resolve(db, project)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"{_base(namespace, name)}/export")
    text = "".join(line + "\n" for line in result["sql"])
    if output is None:
        typer.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        err.print(f"[green]ok[/] exported {name} to {output}", highlight=False)


def _migration_files(db: str, project: Path, directory: Path | None, *,
                     need: bool = True) -> tuple[str, list[Path]]:
    name, entry = _resolve(db, project)
    where = directory or project / (entry["migrations_dir"] if entry else "migrations")
    if not where.is_dir():
        if need or directory is not None:
            raise fail(f"no migrations directory {where}", 2)
        return name, []
    return name, sorted(p for p in where.iterdir() if p.suffix == ".sql" and p.is_file())


DirOpt = Annotated[Path | None, typer.Option("--dir", help="migrations directory (default: "
                                             "the project's migrations_dir)")]


@migrations_app.command("list")
def migrations_list(db: Db, directory: DirOpt = None, ns: NsOpt = None,
                    as_json: JsonOpt = False, project: ProjectOpt = Path("."),
                    url: UrlOpt = None, token: TokenOpt = None,
                    profile: ProfileOpt = None) -> None:
    """Each migration file and whether it is applied (from `d1_migrations`); without a
    migrations directory, the applied ones."""
    name, files = _migration_files(db, project, directory, need=False)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        applied = {m["name"]: m for m in client.get(f"{_base(namespace, name)}/migrations")}
    names = sorted({f.name for f in files} | set(applied))
    rows = [{"name": n, "status": "applied" if n in applied else "pending",
             "applied_at": applied.get(n, {}).get("applied_at")} for n in names]
    if as_json:
        print_json(rows)
        return
    table(rows, [("name", "migration"), ("status", "status"), ("applied_at", "applied at")])


@migrations_app.command("apply")
def migrations_apply(db: Db, directory: DirOpt = None, ns: NsOpt = None,
                     as_json: JsonOpt = False, project: ProjectOpt = Path("."),
                     url: UrlOpt = None, token: TokenOpt = None,
                     profile: ProfileOpt = None) -> None:
    """Apply the pending migrations in name order, each in one transaction."""
    name, files = _migration_files(db, project, directory)
    body = {"migrations": [{"name": f.name, "sql": f.read_text(encoding="utf-8")}
                           for f in files]}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"{_base(namespace, name)}/migrations/apply", body)
    if as_json:
        print_json(result)
        return
    for m in result["applied"]:
        err.print(f"[green]applied[/] {m}", highlight=False)
    if not result["applied"]:
        err.print("[green]ok[/] no migrations to apply", highlight=False)


@app.command("backup")
def backup(db: Db, ns: NsOpt = None, as_json: JsonOpt = False, project: ProjectOpt = Path("."),
           url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Back the database up to the object store (a consistent SQLite copy)."""
    name, _ = _resolve(db, project)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"{_base(namespace, name)}/backups")
    if as_json:
        print_json(result)
        return
    err.print(f"[green]ok[/] backup {result['backup_id']} of {name} ({result['size']} bytes)",
              highlight=False)
    typer.echo(result["backup_id"])


@app.command("backups")
def backups(db: Db, ns: NsOpt = None, as_json: JsonOpt = False,
            project: ProjectOpt = Path("."), url: UrlOpt = None, token: TokenOpt = None,
            profile: ProfileOpt = None) -> None:
    name, _ = _resolve(db, project)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        rows = client.get(f"{_base(namespace, name)}/backups")
    if as_json:
        print_json(rows)
        return
    table(rows, [("backup_id", "backup"), ("size", "bytes"), ("created_at", "created"),
                 ("created_by", "by")], {"created_at": when})


@app.command("restore")
def restore(db: Db, backup_id: Annotated[str, typer.Option("--backup", help="backup id")],
            ns: NsOpt = None, as_json: JsonOpt = False, project: ProjectOpt = Path("."),
            url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Replace the database's content with a backup (one transaction)."""
    name, _ = _resolve(db, project)
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        result = client.post(f"{_base(namespace, name)}/restore", {"backup_id": backup_id})
    outcome(result, f"D1 database {name} restored from {backup_id}", as_json)
