"""Quarantined versions: listed for operators and tenants, lifted by operators.

The watchdog quarantines a version after K hangs or crashes of a workerd
process (docs/containment.md). Lifting is an admin decision: the tenant's fix
is to promote another version, which serves at once.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from eventlog.events import QuarantineLifted
from services.api.auth import Auth, require_admin
from services.api.commands import build, idempotency_key, submit
from services.api.models import CommandResult
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    WorkerName,
    namespace_doc,
)

router = APIRouter(tags=["quarantine"])
VersionId = Annotated[str, Path(max_length=128, description="version id")]


@router.get("/v1/quarantine", responses=READ_ERRORS)
async def list_all(ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    """Every quarantined version the token may see (admins: all namespaces)."""
    return [q for q in await ctx.reader.quarantined() if principal.can_read(q["namespace"])]


@router.get("/v1/namespaces/{ns}/quarantine", responses=READ_ERRORS)
async def list_namespace(ns: Namespace, ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    await namespace_doc(ctx, principal, ns)
    return [q for q in await ctx.reader.quarantined() if q["namespace"] == ns]


@router.delete("/v1/namespaces/{ns}/workers/{worker}/versions/{version}/quarantine",
               response_model=CommandResult, responses=WRITE_ERRORS)
async def lift(ns: Namespace, worker: WorkerName, version: VersionId, ctx: Ctx,
               principal: Auth, idem: IdemKey = None, note: str = "") -> dict[str, Any]:
    """Lift a quarantine (admin): the version serves again if it is the active one."""
    require_admin(principal)
    await namespace_doc(ctx, principal, ns, write=True)
    event = QuarantineLifted(namespace=ns, worker=worker, version_id=version, note=note[:2000])
    env = build(ctx, principal, event, idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()
