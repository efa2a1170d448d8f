"""Hyperdrive configs: create, list, get, update, delete (docs/hyperdrive.md).

The origin's connection string is parsed and sealed here, before any event exists;
answers show its host, port and database only, never its user or password, and no
error quotes it. The config's pooler password is made here too (the platform's, not
the origin's) and sealed: only the state service's bundle opens it, into the
tenant's env.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import Field

from eventlog.events import HyperdriveCreated, HyperdriveDeleted, HyperdriveUpdated
from eventlog.events.hyperdrive import CONFIG_ID_RE, MAX_POOL_SIZE
from services.api.auth import Auth
from services.api.commands import build, idempotency_key, submit
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.models import CommandResult, _Strict
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    bound_by_active,
    namespace_doc,
)
from services.crypto.context import SecretContext
from services.hyperdrive.origin import MAX_CONNECTION_STRING, Origin, OriginError, parse_origin

router = APIRouter(prefix="/v1/namespaces/{ns}/hyperdrive", tags=["hyperdrive"])
KIND = "hyperdrive"
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
# A config is named by its name or its 32-hex id (wrangler binds the id).
ConfigRef = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")]
Force = Annotated[bool, Query(description="delete even if an active version binds it")]


class HyperdriveIn(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    connection_string: str = Field(min_length=1, max_length=MAX_CONNECTION_STRING,
                                   description="postgres://user:password@host:port/database")
    pool_size: int = Field(0, ge=0, le=MAX_POOL_SIZE,
                           description="server connections; 0: the namespace's default")


class HyperdriveUpdate(_Strict):
    connection_string: str = Field(min_length=1, max_length=MAX_CONNECTION_STRING)
    pool_size: int = Field(0, ge=0, le=MAX_POOL_SIZE)


def origin_context(ns: str, cid: str) -> SecretContext:
    return SecretContext(ns, None, f"hyperdrive-origin/{cid}")


def password_context(ns: str, cid: str) -> SecretContext:
    # services/state/bundles.py opens a resource binding's password as `<kind>/<target>`.
    return SecretContext(ns, None, f"{KIND}/{cid}")


def _view(doc: dict[str, Any]) -> dict[str, Any]:
    """What anyone may see of a config: no credential, no ciphertext."""
    return {"name": doc["name"], "id": doc["config_id"],
            "origin": {"host": doc["origin_host"], "port": doc["origin_port"],
                       "database": doc["origin_database"], "scheme": "postgresql"},
            "pool_size": doc.get("pool_size") or 0, "created_at": doc.get("created_at"),
            "created_by": doc.get("created_by"), "version": doc.get("version")}


def _origin(text: str) -> Origin:
    try:
        return parse_origin(text)
    except OriginError as exc:
        raise ApiError(400, "invalid_connection_string", str(exc),
                       field="connection_string") from None


async def _find(ctx: ApiContext, ns: str, ref: str) -> dict[str, Any]:
    docs = await ctx.reader.resources(KIND, ns)
    doc = docs.get(ref) if CONFIG_ID_RE.fullmatch(ref) else None
    if doc is None:
        doc = next((d for d in docs.values() if d.get("name") == ref), None)
    if doc is None:
        raise ApiError(404, "hyperdrive_not_found",
                       f"Hyperdrive config {ref!r} does not exist in namespace {ns}")
    return doc


@router.get("", responses=READ_ERRORS, summary="Hyperdrive configs of this namespace")
async def list_configs(ns: Namespace, ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    await namespace_doc(ctx, principal, ns)
    docs = await ctx.reader.resources(KIND, ns)
    return sorted((_view(d) for d in docs.values()), key=lambda d: d["name"])


@router.get("/{ref}", responses=READ_ERRORS, summary="One config, by name or id")
async def get_config(ns: Namespace, ref: ConfigRef, ctx: Ctx,
                     principal: Auth) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns)
    return _view(await _find(ctx, ns, ref))


@router.post("", status_code=201, response_model=None, responses=WRITE_ERRORS,
             summary="Create a config (409 `resource_exists` if the name is taken)")
async def create_config(ns: Namespace, body: HyperdriveIn, ctx: Ctx, principal: Auth,
                        idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    origin = _origin(body.connection_string)
    async with ctx.quota_locks.hold(KIND, ns):
        docs = await ctx.reader.resources(KIND, ns)
        if any(d.get("name") == body.name for d in docs.values()):
            raise ApiError(409, "resource_exists", f"Hyperdrive config {body.name!r} already "
                           f"exists in namespace {ns}")
        ctx.quotas.check(KIND, len(docs), f"namespace {ns}",
                         way_out="delete a Hyperdrive config first")
        cid = uuid.uuid4().hex
        event = HyperdriveCreated(
            namespace=ns, name=body.name, config_id=cid, origin_host=origin.host,
            origin_port=origin.port, origin_database=origin.database,
            pool_size=body.pool_size,
            sealed_origin=ctx.keyring.seal(origin_context(ns, cid),
                                           origin.connection_string().encode()),
            sealed_password=ctx.keyring.seal(password_context(ns, cid),
                                             secrets.token_urlsafe(24).encode()))
        env = build(ctx, principal, event, idempotency=idempotency_key(principal, idem))
        result = (await submit(ctx, env)).require_accepted(name=body.name).as_dict()
    return {**result, "id": cid, "name": body.name}


@router.put("/{ref}", response_model=CommandResult, responses=WRITE_ERRORS,
            summary="A new origin (and pool size); the id and pooler credentials stay")
async def update_config(ns: Namespace, ref: ConfigRef, body: HyperdriveUpdate, ctx: Ctx,
                        principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    doc = await _find(ctx, ns, ref)
    origin = _origin(body.connection_string)
    cid = doc["config_id"]
    event = HyperdriveUpdated(
        namespace=ns, name=doc["name"], config_id=cid, origin_host=origin.host,
        origin_port=origin.port, origin_database=origin.database, pool_size=body.pool_size,
        sealed_origin=ctx.keyring.seal(origin_context(ns, cid),
                                       origin.connection_string().encode()))
    env = build(ctx, principal, event, idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted(name=doc["name"]).as_dict()


@router.delete("/{ref}", response_model=CommandResult, responses=WRITE_ERRORS,
               summary="Delete a config (409 `resource_in_use` while an active version "
                       "binds it, unless forced)")
async def delete_config(ns: Namespace, ref: ConfigRef, ctx: Ctx, principal: Auth,
                        force: Force = False, idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    doc = await _find(ctx, ns, ref)
    if not force:
        users = await bound_by_active(ctx, ns, KIND, doc["config_id"])
        if users:
            raise ApiError(409, "resource_in_use",
                           f"Hyperdrive config {doc['name']!r} is bound by the active version "
                           f"of {', '.join(users)}; promote versions without it first, or "
                           "delete with force")
    env = build(ctx, principal, HyperdriveDeleted(namespace=ns, name=doc["name"], force=force),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted(name=doc["name"]).as_dict()


