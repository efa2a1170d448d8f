"""Tenant resources as control state: KV namespaces and R2 buckets (create, list, delete).

Each is an event on the namespace's partition; the fold refuses a duplicate
(`resource_exists`), a missing one (`resource_not_found`) and, unless forced,
the delete of one an active version binds (`resource_in_use`). Their data is
not here: services/api/routes/kv_data.py and r2_data.py serve it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from eventlog.bindings import SPECS
from eventlog.events import (
    KvNamespaceCreated,
    KvNamespaceDeleted,
    R2BucketCreated,
    R2BucketDeleted,
)
from services.api.auth import Auth
from services.api.commands import build, idempotency_key, submit
from services.api.errors import ApiError
from services.api.models import CommandResult, ResourceCreate
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    bound_by_active,
    namespace_doc,
)

router = APIRouter(prefix="/v1/namespaces/{ns}", tags=["resources"])
ResourceName = Annotated[str, Path(min_length=1, max_length=64)]
Force = Annotated[bool, Query(description="delete even if an active version binds it")]

# kind -> (create event, delete event, what users call it: the registry's label)
_KINDS: dict[str, tuple[type[KvNamespaceCreated | R2BucketCreated],
                        type[KvNamespaceDeleted | R2BucketDeleted], str]] = {
    kind: (created, deleted, SPECS[kind].label) for kind, created, deleted in (
        ("kv", KvNamespaceCreated, KvNamespaceDeleted),
        ("r2", R2BucketCreated, R2BucketDeleted))}


def _view(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, **doc}


async def _list(ctx: Ctx, principal: Auth, ns: str, kind: str) -> list[dict[str, Any]]:
    await namespace_doc(ctx, principal, ns)
    docs = await ctx.reader.resources(kind, ns)
    return [_view(name, doc) for name, doc in sorted(docs.items())]


async def _create(ctx: Ctx, principal: Auth, ns: str, kind: str, name: str,
                  idem: str | None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    created, _, label = _KINDS[kind]
    async with ctx.quota_locks.hold(kind, ns):  # counted and written in turn
        ctx.quotas.check(kind, len(await ctx.reader.resources(kind, ns)), f"namespace {ns}",
                         way_out=f"delete a {label} first")
        env = build(ctx, principal, created(namespace=ns, name=name),
                    idempotency=idempotency_key(principal, idem))
        return (await submit(ctx, env)).require_accepted(name=name).as_dict()


async def _delete(ctx: Ctx, principal: Auth, ns: str, kind: str, name: str, force: bool,
                  idem: str | None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    _, deleted, label = _KINDS[kind]
    if await ctx.reader.resource(kind, ns, name) is None:
        raise ApiError(404, f"{kind}_not_found" if kind != "kv" else "kv_namespace_not_found",
                       f"{label} {name!r} does not exist in namespace {ns}")
    if not force:
        users = await bound_by_active(ctx, ns, kind, name)
        if users:
            # Refused here so nothing is written; the fold decides a racing promote.
            raise ApiError(409, "resource_in_use",
                           f"{label} {name!r} is bound by the active version of "
                           f"{', '.join(users)}; promote versions without it first, or "
                           "delete with force")
    env = build(ctx, principal, deleted(namespace=ns, name=name, force=force),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted(name=name).as_dict()


def _register(kind: str) -> None:
    """list / create / delete routes of one resource kind, under `/{kind}`."""
    label = _KINDS[kind][2]

    async def list_(ns: Namespace, ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
        return await _list(ctx, principal, ns, kind)

    async def create(ns: Namespace, body: ResourceCreate, ctx: Ctx, principal: Auth,
                     idem: IdemKey = None) -> dict[str, Any]:
        return await _create(ctx, principal, ns, kind, body.name, idem)

    async def delete(ns: Namespace, name: ResourceName, ctx: Ctx, principal: Auth,
                     force: Force = False, idem: IdemKey = None) -> dict[str, Any]:
        result = await _delete(ctx, principal, ns, kind, name, force, idem)
        store = ctx.kv if kind == "kv" else ctx.r2
        if store is not None:
            await store.purge(ns, name)  # the data goes once the delete is accepted
        return result

    router.add_api_route(f"/{kind}", list_, methods=["GET"], responses=READ_ERRORS,
                         name=f"list_{kind}", summary=f"{label}s of this namespace")
    router.add_api_route(f"/{kind}", create, methods=["POST"], status_code=201,
                         response_model=CommandResult, responses=WRITE_ERRORS,
                         name=f"create_{kind}",
                         summary=f"Create a {label} (409 `resource_exists` if it exists)")
    router.add_api_route(f"/{kind}/{{name}}", delete, methods=["DELETE"],
                         response_model=CommandResult, responses=WRITE_ERRORS,
                         name=f"delete_{kind}",
                         summary=f"Delete a {label} and its data (409 `resource_in_use` "
                         "while an active version binds it, unless forced)")


for _kind in _KINDS:
    _register(_kind)
