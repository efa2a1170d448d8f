"""Health, identity, projection status and event lookups."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from projections.rebuild import status
from services.api.auth import BOOTSTRAP_ID, Auth, require_read
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
async def projection_status(ctx: Ctx, _: Auth) -> list[dict[str, Any]]:
    """Per projection and partition: generation, applied offset, log end and lag."""
    return await status(ctx.log, ctx.store, ctx.audit)


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
