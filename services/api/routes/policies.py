"""Namespace policies: the outbound egress policy and service grants to other namespaces.

Egress is a platform decision (admin tokens set it; the namespace's tokens
read it); grants belong to the namespace that owns the workers (its writers
grant and revoke). Both are rendered into the namespace record, so the
gateway sees a change with the namespace's next invalidation.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from eventlog.events import (
    ALL_GRANTS,
    SHARE_FIELDS,
    EgressPolicySet,
    EgressRule,
    NamespaceLimitsSet,
    ServiceGranted,
    ServiceRevoked,
)
from services.api.auth import Auth, require_admin
from services.api.commands import build, idempotency_key, submit
from services.api.errors import ApiError
from services.api.models import CommandResult, EgressPolicyIn, LimitsIn, ServiceGrantIn
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    namespace_doc,
)

router = APIRouter(prefix="/v1/namespaces/{ns}", tags=["policies"])
DEFAULT_EGRESS: dict[str, Any] = {"mode": "public", "allow": []}
DEFAULT_SUBREQUESTS = 1000  # as workerd/gateway/gateway.js applies it


@router.get("/egress", responses=READ_ERRORS)
async def show_egress(ns: Namespace, ctx: Ctx, principal: Auth) -> dict[str, Any]:
    """The namespace's egress policy (`public` unless one was set)."""
    doc = await namespace_doc(ctx, principal, ns)
    return dict(doc.get("egress") or DEFAULT_EGRESS)


@router.put("/egress", response_model=CommandResult, responses=WRITE_ERRORS)
async def set_egress(ns: Namespace, body: EgressPolicyIn, ctx: Ctx, principal: Auth,
                     idem: IdemKey = None) -> dict[str, Any]:
    """Replace the egress policy (admin): `deny`, `public`, or `allow` with host rules."""
    require_admin(principal)
    await namespace_doc(ctx, principal, ns, write=True)
    event = EgressPolicySet(namespace=ns, mode=body.mode, allow=tuple(
        EgressRule(host=r.host.lower(), ports=tuple(r.ports)) for r in body.allow))
    env = build(ctx, principal, event, idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.get("/limits", responses=READ_ERRORS)
async def show_limits(ns: Namespace, ctx: Ctx, principal: Auth) -> dict[str, Any]:
    """Per-request budgets of the namespace's workers, with the defaults filled in."""
    doc = await namespace_doc(ctx, principal, ns)
    limits = doc.get("limits") or {}
    return {"wall_ms": int(limits.get("wall_ms") or 0),
            "subrequests": int(limits.get("subrequests") or 0) or DEFAULT_SUBREQUESTS,
            # 0: the engine's own default share (each engine's settings; docs/security.md).
            **{k: int(limits.get(k) or 0) for k in SHARE_FIELDS},
            "set": bool(limits)}


@router.put("/limits", response_model=CommandResult, responses=WRITE_ERRORS)
async def set_limits(ns: Namespace, body: LimitsIn, ctx: Ctx, principal: Auth,
                     idem: IdemKey = None) -> dict[str, Any]:
    """Replace the per-request budgets and fair shares (admin); 0 restores a default."""
    require_admin(principal)
    await namespace_doc(ctx, principal, ns, write=True)
    event = NamespaceLimitsSet(namespace=ns, wall_ms=body.wall_ms, subrequests=body.subrequests,
                               **{k: getattr(body, k) for k in SHARE_FIELDS})
    env = build(ctx, principal, event, idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.get("/grants", responses=READ_ERRORS)
async def list_grants(ns: Namespace, ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    """Namespaces that may bind this namespace's workers as services."""
    doc = await namespace_doc(ctx, principal, ns)
    return list(doc.get("grants") or [])


@router.post("/grants", response_model=CommandResult, responses=WRITE_ERRORS)
async def grant(ns: Namespace, body: ServiceGrantIn, ctx: Ctx, principal: Auth,
                idem: IdemKey = None) -> dict[str, Any]:
    """Let namespace `to` bind `worker` (or every worker, `*`) of this namespace."""
    await namespace_doc(ctx, principal, ns, write=True)
    if await ctx.reader.namespace(body.to) is None:
        raise ApiError(404, "namespace_not_found", f"namespace {body.to!r} does not exist")
    env = build(ctx, principal, ServiceGranted(namespace=ns, grantee=body.to,
                                               worker=body.worker),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.delete("/grants/{to}", response_model=CommandResult, responses=WRITE_ERRORS)
async def revoke(ns: Namespace, to: Annotated[str, Path(max_length=64)], ctx: Ctx,
                 principal: Auth,
                 worker: Annotated[str | None, Query(
                     max_length=64, description="the grant to revoke (a worker, or * for the "
                     "grant of every worker); default: every grant to `to`")] = None,
                 idem: IdemKey = None) -> dict[str, Any]:
    """Revoke grants to namespace `to`: all of them (one event) unless `worker` names one."""
    doc = await namespace_doc(ctx, principal, ns, write=True)
    held = [g.get("worker") for g in doc.get("grants") or [] if g.get("namespace") == to]
    if (worker is None and not held) or (worker is not None and worker not in held):
        # Refused before anything is written; the fold decides again (a racing revoke).
        what = f"{ns}/{worker}" if worker is not None else f"any worker of {ns}"
        raise ApiError(409, "grant_missing", f"{to} has no grant for {what}")
    env = build(ctx, principal, ServiceRevoked(
        namespace=ns, grantee=to, worker=ALL_GRANTS if worker is None else worker),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()
