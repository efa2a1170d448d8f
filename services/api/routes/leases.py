"""Owner leases (operators): inspect and take over with a generation fence."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from eventlog.events import LeaseTakenOver
from eventlog.ids import now_ms
from services.api.auth import Auth, require_admin
from services.api.commands import build, idempotency_key, submit
from services.api.errors import ApiError
from services.api.models import LEASE_SCOPE_PATTERN, CommandResult, LeaseTakeoverRequest
from services.api.routes.common import READ_ERRORS, WRITE_ERRORS, Ctx, IdemKey

router = APIRouter(prefix="/v1/leases", tags=["leases"])
Scope = Annotated[str, Path(pattern=LEASE_SCOPE_PATTERN)]


@router.get("", responses=READ_ERRORS)
async def list_leases(ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    require_admin(principal)
    return [{"scope": scope, **doc} for scope, doc in sorted((await ctx.reader.leases()).items())]


@router.get("/{scope:path}", responses=READ_ERRORS)
async def show_lease(scope: Scope, ctx: Ctx, principal: Auth) -> dict[str, Any]:
    require_admin(principal)
    doc = await ctx.reader.lease(scope)
    if doc is None:
        raise ApiError(404, "lease_not_found", f"lease {scope!r} not found")
    return {"scope": scope, **doc}


@router.post("/{scope:path}/takeover", response_model=CommandResult, responses=WRITE_ERRORS)
async def take_over(scope: Scope, body: LeaseTakeoverRequest, ctx: Ctx, principal: Auth,
                    idem: IdemKey = None) -> dict[str, Any]:
    """Fence the current holder off: the generation moves to expected + 1.

    `expected_generation` defaults to the projection's; a stale one is refused
    by the fold (409 `stale_generation`).
    """
    require_admin(principal)
    doc = await ctx.reader.lease(scope) or {}
    expected = (body.expected_generation if body.expected_generation is not None
                else int(doc.get("generation", 0)))
    previous = doc.get("holder") or "none"
    env = build(ctx, principal, LeaseTakenOver(
        scope=scope, holder=body.holder, generation=expected + 1, ttl_ms=body.ttl_ms,
        expires_at=now_ms() + body.ttl_ms, previous_holder=str(previous)),
        idempotency=idempotency_key(principal, idem), expected_generation=expected)
    return (await submit(ctx, env)).require_accepted().as_dict()
