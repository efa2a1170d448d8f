"""D1 databases: control state (create, list, delete, migrations, backups) and data
access for operators (execute, export), proxied to the D1 service.

Create/delete/migrations/backup/restore are events on the namespace's partition
(eventlog/events/d1.py); rows are read and written only by the database's owner
replica (services/d1), reached through any replica.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field

from eventlog.events import (
    D1BackupCreated,
    D1DatabaseCreated,
    D1DatabaseDeleted,
    D1DatabaseRestored,
    D1MigrationsApplied,
)
from services.api.auth import Auth, Principal
from services.api.commands import build, idempotency_key, submit
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.models import CommandResult
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    bound_by_active,
    namespace_doc,
)
from services.d1.client import D1Client, D1Unavailable
from services.d1.engine import statements

router = APIRouter(prefix="/v1/namespaces/{ns}/d1", tags=["d1"])
DbName = Annotated[str, Path(min_length=1, max_length=63, description="D1 database name")]
Force = Annotated[bool, Query(description="delete even if an active version binds it")]
MIGRATIONS_TABLE = ("CREATE TABLE IF NOT EXISTS d1_migrations(id INTEGER PRIMARY KEY "
                    "AUTOINCREMENT, name TEXT UNIQUE, applied_at TIMESTAMP DEFAULT "
                    "CURRENT_TIMESTAMP NOT NULL)")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class D1Create(_Strict):
    name: str = Field(min_length=1, max_length=63)
    database_id: str = Field("", description="a uuid (wrangler's `database_id`); "
                             "generated when empty")


class D1Execute(_Strict):
    sql: str = Field(min_length=1, max_length=10 * 1024 * 1024,
                     description="one or more statements, run in one transaction")


class Migration(_Strict):
    name: str = Field(min_length=1, max_length=200)
    sql: str = Field(max_length=10 * 1024 * 1024)


class MigrationsApply(_Strict):
    migrations: list[Migration] = Field(description="wrangler's migrations directory, "
                                        "in order; the applied ones are skipped")


class Restore(_Strict):
    backup_id: str = Field(min_length=1, max_length=128)


async def _record(ctx: ApiContext, principal: Principal, ns: str, name: str, *,
                  write: bool) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=write)
    doc = await ctx.reader.resource("d1", ns, name)
    if doc is None:
        raise ApiError(404, "d1_database_not_found",
                       f"D1 database {name!r} does not exist in namespace {ns}")
    return doc


def _client(ctx: ApiContext) -> D1Client:
    client: D1Client | None = ctx.d1
    if client is None:
        raise ApiError(503, "d1_unavailable", "this API process has no D1 service configured")
    return client


async def _d1(ctx: ApiContext, ns: str, name: str, op: str, **kw: Any) -> Any:
    try:
        response = await _client(ctx).call(ns, name, op, **kw)
    except D1Unavailable as exc:
        raise ApiError(503, "d1_unavailable", str(exc)) from None
    if response.headers.get("content-type", "").startswith("application/json"):
        body = response.json()
        if isinstance(body, dict) and body.get("success") is False:
            status = response.status_code if response.status_code >= 400 else 400
            raise ApiError(status, body.get("code") or "d1_error", f"D1_ERROR: {body['error']}")
        return body
    if response.status_code >= 400:
        raise ApiError(502, "d1_error", f"the D1 service answered {response.status_code}")
    return response.content


async def _event(ctx: ApiContext, principal: Principal, payload: Any,
                 idem: str | None = None) -> dict[str, Any]:
    env = build(ctx, principal, payload, idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted(name=payload.name).as_dict()


@router.get("", responses=READ_ERRORS, summary="D1 databases of this namespace")
async def list_databases(ns: Namespace, ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    await namespace_doc(ctx, principal, ns)
    docs = await ctx.reader.resources("d1", ns)
    return [{"name": name, **doc} for name, doc in sorted(docs.items())]


@router.post("", status_code=201, responses=WRITE_ERRORS,
             summary="Create a D1 database (409 `resource_exists`, `database_id_in_use`); "
             "the command result and the `database_id`")
async def create_database(ns: Namespace, body: D1Create, ctx: Ctx, principal: Auth,
                          idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    database_id = body.database_id.lower() or str(uuid.uuid4())
    async with ctx.quota_locks.hold("d1", ns):  # counted and written in turn
        ctx.quotas.check("d1", len(await ctx.reader.resources("d1", ns)), f"namespace {ns}",
                         way_out="delete a D1 database first")
        result = await _event(ctx, principal, D1DatabaseCreated(
            namespace=ns, name=body.name, database_id=database_id), idem)
    return {**result, "database_id": database_id}


@router.get("/{name}", responses=READ_ERRORS, summary="One D1 database's record")
async def get_database(ns: Namespace, name: DbName, ctx: Ctx,
                       principal: Auth) -> dict[str, Any]:
    return {"name": name, **await _record(ctx, principal, ns, name, write=False)}


@router.delete("/{name}", response_model=CommandResult, responses=WRITE_ERRORS,
               summary="Delete a D1 database (409 `resource_in_use` while bound, unless forced)")
async def delete_database(ns: Namespace, name: DbName, ctx: Ctx, principal: Auth,
                          force: Force = False, idem: IdemKey = None) -> dict[str, Any]:
    await _record(ctx, principal, ns, name, write=True)
    if not force:
        users = await bound_by_active(ctx, ns, "d1", name)
        if users:
            raise ApiError(409, "resource_in_use",
                           f"D1 database {name!r} is bound by the active version of "
                           f"{', '.join(users)}; promote versions without it first, or "
                           "delete with force")
    # The file stays (named by the database id, never reused); docs/d1.md.
    return await _event(ctx, principal, D1DatabaseDeleted(namespace=ns, name=name,
                                                          force=force), idem)


@router.post("/{name}/execute", responses=WRITE_ERRORS,
             summary="Run SQL (all statements in one transaction); D1 results per statement")
async def execute(ns: Namespace, name: DbName, body: D1Execute, ctx: Ctx,
                  principal: Auth) -> list[dict[str, Any]]:
    await _record(ctx, principal, ns, name, write=True)
    queries = [{"sql": s, "params": []} for s in statements(body.sql)]
    if not queries:
        raise ApiError(400, "d1_error", "D1_ERROR: No SQL statements detected.")
    result: list[dict[str, Any]] = await _d1(ctx, ns, name, "query", json_body=queries,
                                             params={"resultsFormat": "ROWS_AND_COLUMNS"})
    return result


@router.post("/{name}/export", responses=READ_ERRORS,
             summary="The database as SQL statements (schema and rows)")
async def export(ns: Namespace, name: DbName, ctx: Ctx, principal: Auth) -> dict[str, Any]:
    await _record(ctx, principal, ns, name, write=False)
    result: dict[str, Any] = await _d1(ctx, ns, name, "dump")
    return result


@router.get("/{name}/migrations", responses=READ_ERRORS,
            summary="Applied migrations (the database's `d1_migrations` table)")
async def list_migrations(ns: Namespace, name: DbName, ctx: Ctx,
                          principal: Auth) -> list[dict[str, Any]]:
    await _record(ctx, principal, ns, name, write=False)
    return await _applied(ctx, ns, name)


async def _applied(ctx: ApiContext, ns: str, name: str) -> list[dict[str, Any]]:
    result = await _d1(ctx, ns, name, "query", json_body=[
        {"sql": MIGRATIONS_TABLE, "params": []},
        {"sql": "SELECT id, name, applied_at FROM d1_migrations ORDER BY id", "params": []}],
        params={"resultsFormat": "ROWS_AND_COLUMNS"})
    table = result[-1]["results"]
    return [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]


@router.post("/{name}/migrations/apply", responses=WRITE_ERRORS,
             summary="Apply the migrations not applied yet, each in its own transaction")
async def apply_migrations(ns: Namespace, name: DbName, body: MigrationsApply, ctx: Ctx,
                           principal: Auth) -> dict[str, Any]:
    await _record(ctx, principal, ns, name, write=True)
    done = {m["name"] for m in await _applied(ctx, ns, name)}
    applied: list[str] = []
    for migration in body.migrations:
        if migration.name in done:
            continue
        queries = [{"sql": s, "params": []} for s in statements(migration.sql)]
        # The statements and the bookkeeping row commit together, as wrangler's do.
        queries.append({"sql": "INSERT INTO d1_migrations (name) VALUES (?)",
                        "params": [migration.name]})
        try:
            await _d1(ctx, ns, name, "query", json_body=queries,
                      params={"resultsFormat": "NONE"})
        except ApiError as exc:
            if applied:
                await _event(ctx, principal, D1MigrationsApplied(
                    namespace=ns, name=name, migrations=tuple(applied)))
            raise ApiError(exc.status, exc.code, f"migration {migration.name}: "
                           f"{exc.message}") from None
        applied.append(migration.name)
    if applied:
        await _event(ctx, principal, D1MigrationsApplied(namespace=ns, name=name,
                                                         migrations=tuple(applied)))
    return {"applied": applied, "already_applied": sorted(done)}


@router.get("/{name}/backups", responses=READ_ERRORS, summary="Backups of the database")
async def list_backups(ns: Namespace, name: DbName, ctx: Ctx,
                       principal: Auth) -> list[dict[str, Any]]:
    await _record(ctx, principal, ns, name, write=False)
    docs = await ctx.reader.d1_backups(ns, name)
    return sorted(({"backup_id": k, **v} for k, v in docs.items()),
                  key=lambda b: (b["created_at"], b["backup_id"]))


@router.post("/{name}/backups", status_code=201, responses=WRITE_ERRORS,
             summary="Back up to the object store (SQLite online backup)")
async def create_backup(ns: Namespace, name: DbName, ctx: Ctx,
                        principal: Auth) -> dict[str, Any]:
    await _record(ctx, principal, ns, name, write=True)
    async with ctx.quota_locks.hold("d1_backups", f"{ns}/{name}"):  # in turn
        ctx.quotas.check("d1_backups", len(await ctx.reader.d1_backups(ns, name)),
                         f"D1 database {name}", way_out="delete a backup first")
        data = await _d1(ctx, ns, name, "backup")
        if not isinstance(data, bytes):
            raise ApiError(502, "d1_error", "the D1 service answered no backup")
        ref = await ctx.blobs.put(data)
        backup_id = "b-" + uuid.uuid4().hex[:16]
        result = await _event(ctx, principal, D1BackupCreated(
            namespace=ns, name=name, backup_id=backup_id, size=ref.size, sha256=ref.sha256))
    return {**result, "backup_id": backup_id, "size": ref.size, "sha256": ref.sha256}


@router.post("/{name}/restore", responses=WRITE_ERRORS,
             summary="Replace the database's content with a backup")
async def restore(ns: Namespace, name: DbName, body: Restore, ctx: Ctx,
                  principal: Auth) -> dict[str, Any]:
    await _record(ctx, principal, ns, name, write=True)
    backup = (await ctx.reader.d1_backups(ns, name)).get(body.backup_id)
    if backup is None:
        raise ApiError(404, "backup_not_found", f"backup {body.backup_id} of D1 database "
                       f"{name!r} does not exist")
    data = await ctx.blobs.get(backup["sha256"])
    await _d1(ctx, ns, name, "restore", content=data)
    return await _event(ctx, principal, D1DatabaseRestored(namespace=ns, name=name,
                                                           backup_id=body.backup_id))
