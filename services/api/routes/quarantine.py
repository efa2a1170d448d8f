"""Held namespaces, quarantined versions and strikes: listed for operators and tenants,
lifted by operators.

The watchdog strikes a namespace for each workerd process it loses to it and
holds the namespace back after K strikes within a window (docs/containment.md);
older logs also quarantined single versions. Lifting is an admin decision: a
held namespace stays held whatever it deploys.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Path

from eventlog.events import NamespaceQuarantineLifted, QuarantineLifted
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
    """Every held namespace (`worker` null) and quarantined version the token may see
    (admins: all namespaces)."""
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


@router.delete("/v1/namespaces/{ns}/quarantine", response_model=CommandResult,
               responses=WRITE_ERRORS)
async def lift_namespace(ns: Namespace, ctx: Ctx, principal: Auth, idem: IdemKey = None,
                         note: str = "") -> dict[str, Any]:
    """Lift a namespace's hold (admin): its workers serve again, its strikes start over."""
    require_admin(principal)
    await namespace_doc(ctx, principal, ns, write=True)
    event = NamespaceQuarantineLifted(namespace=ns, note=note[:2000])
    env = build(ctx, principal, event, idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.get("/v1/strikes", responses=READ_ERRORS)
async def strikes(ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    """The watchdog's strikes per namespace the token may see: `strikes` counts those
    still within the window, `at` lists their times (ms)."""
    now = int(time.time() * 1000)
    out = []
    for record in await ctx.reader.strikes():
        if not principal.can_read(record["namespace"]):
            continue
        recent = [at for at in record["strikes"] if at > now - record["window_s"] * 1000]
        out.append({"namespace": record["namespace"], "strikes": len(recent), "at": recent,
                    "window_s": record["window_s"], "hold_after": record["hold_after"],
                    "held": record["held"], "last": record["last"]})
    return out
