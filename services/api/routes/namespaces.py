"""Namespaces: create, list, show."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from eventlog.events import NamespaceCreated
from services.api.auth import Auth, require_admin
from services.api.commands import build, idempotency_key, submit
from services.api.models import CommandResult, NamespaceCreate
from services.api.routes.common import READ_ERRORS, WRITE_ERRORS, Ctx, IdemKey, Namespace
from services.api.routes.common import namespace_doc as _doc

router = APIRouter(prefix="/v1/namespaces", tags=["namespaces"])


@router.post("", status_code=201, response_model=CommandResult, responses=WRITE_ERRORS)
async def create_namespace(body: NamespaceCreate, ctx: Ctx, principal: Auth,
                           idem: IdemKey = None) -> dict[str, Any]:
    """Create a namespace (admin). An existing name is refused with 409 `namespace_exists`."""
    require_admin(principal)
    env = build(ctx, principal, NamespaceCreated(namespace=body.name,
                                                 description=body.description),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.get("", responses=READ_ERRORS)
async def list_namespaces(ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    """The namespaces this token may read."""
    docs = await ctx.reader.namespaces()
    return [{"name": name, **doc} for name, doc in sorted(docs.items())
            if principal.can_read(name)]


@router.get("/{ns}", responses=READ_ERRORS)
async def show_namespace(ns: Namespace, ctx: Ctx, principal: Auth) -> dict[str, Any]:
    doc = await _doc(ctx, principal, ns)
    workers = await ctx.reader.workers(ns)
    return {"name": ns, **doc, "workers": len(workers)}
