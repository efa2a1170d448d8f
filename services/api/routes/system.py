"""Health, identity, projection status and event lookups."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from projections.rebuild import VerificationFailed, rebuild, status, verify_live
from services.api.auth import BOOTSTRAP_ID, Auth, require_admin, require_read
from services.api.commands import find_verdict
from services.api.errors import ApiError
from services.api.routes.common import READ_ERRORS, Ctx

router = APIRouter(tags=["system"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/v1/whoami", responses=READ_ERRORS)
async def whoami(ctx: Ctx, principal: Auth) -> dict[str, Any]:
    """The calling token: id, role, namespaces (empty for admins: all), label, expiry."""
    if principal.token_id == BOOTSTRAP_ID:
        record: dict[str, Any] = {"label": "bootstrap admin token (WDL_ADMIN_TOKEN)"}
    else:
        record = await ctx.reader.token(principal.token_id) or {}
    return {"token_id": principal.token_id, "role": principal.role,
            "namespaces": sorted(principal.namespaces), "actor": principal.actor,
            "all_namespaces": principal.is_admin, "label": record.get("label") or "",
            "expires_at": record.get("expires_at"), "issued_at": record.get("issued_at")}


@router.get("/v1/projections/status", responses=READ_ERRORS)
async def projection_status(ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    """Per projection and partition: generation, applied offset, log end and lag (admin).

    Admins only: a partition's offsets count every namespace's events, so a scoped
    token polling them would watch the other tenants' activity (403 `forbidden`)."""
    require_admin(principal)
    return await status(ctx.log, ctx.store, ctx.audit)


@router.post("/v1/projections/verify", responses=READ_ERRORS)
async def projection_verify(ctx: Ctx, principal: Auth) -> dict[str, Any]:
    """Digest of this platform's live projections against a fresh replay (admin).

    What `wdl projections verify` uses when the projection lives inside the
    platform's process (embedded mode), where no other process can read it."""
    require_admin(principal)
    return (await verify_live(ctx.log, ctx.store, ctx.audit)).as_dict()


@router.post("/v1/projections/rebuild", responses=READ_ERRORS)
async def projection_rebuild(ctx: Ctx, principal: Auth) -> dict[str, Any]:
    """Rebuild this platform's projections in place (admin): shadow generations,
    verified, switched while the projector keeps applying."""
    require_admin(principal)
    try:
        return (await rebuild(ctx.log, ctx.store, ctx.audit)).as_dict()
    except VerificationFailed as exc:
        raise ApiError(409, "verification_failed", str(exc),
                       differences=list(exc.differences)[:50]) from None


@router.get("/v1/events/{event_id}", responses=READ_ERRORS)
async def event_outcome(event_id: uuid.UUID, ctx: Ctx, principal: Auth,
                        partition: Annotated[int | None, Query(ge=0, le=10_000)] = None,
                        ) -> dict[str, Any]:
    """The verdict of an event (poll this after a 504 `verdict_timeout`)."""
    if partition is not None and partition >= ctx.log.partitions:
        raise ApiError(404, "event_not_found", f"event {event_id} not found")
    outcome = await find_verdict(ctx, event_id, partition)
    if outcome is None:
        raise ApiError(404, "event_not_found",
                       f"event {event_id} not found or not projected yet")
    namespace = getattr(outcome.envelope.payload, "namespace", None)
    if not principal.is_admin:
        if namespace is None:
            raise ApiError(404, "event_not_found", f"event {event_id} not found")
        try:
            require_read(principal, namespace)
        except ApiError:
            raise ApiError(404, "event_not_found", f"event {event_id} not found") from None
    return outcome.as_dict()
