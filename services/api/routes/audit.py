"""Audit queries over every event and its verdict."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from services.api.audit_query import (
    AuditFilter,
    Page,
    query_audit,
    request_namespaces,
    wait_audit_caught_up,
)
from services.api.auth import Auth, require_read
from services.api.errors import ApiError
from services.api.models import MAX_INT, NAME_PATTERN
from services.api.request_ids import REQUEST_ID_PATTERN, correlation_for
from services.api.routes.common import READ_ERRORS, Ctx

router = APIRouter(prefix="/v1/audit", tags=["audit"])


@router.get("", responses=READ_ERRORS)
async def audit_query(
    ctx: Ctx, principal: Auth, page: Page,
    namespace: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    worker: Annotated[str | None, Query(pattern=NAME_PATTERN)] = None,
    actor: Annotated[str | None, Query(max_length=256)] = None,
    type: Annotated[list[str] | None, Query(
        description="event type (`worker.version_promoted`) or action (`version_promoted`); "
        "repeatable")] = None,
    verdict: Annotated[str | None, Query(
        max_length=64, description="`accepted`, `rejected`, or a reason code")] = None,
    since: Annotated[int | None, Query(ge=0, le=MAX_INT, description="unix ms, inclusive")] = None,
    until: Annotated[int | None, Query(ge=0, le=MAX_INT, description="unix ms, exclusive")] = None,
    request_id: Annotated[str | None, Query(
        pattern=REQUEST_ID_PATTERN, description="only the events that request appended "
        "(the `X-Request-Id` it sent or was given)")] = None,
) -> dict[str, Any]:
    """Events with their verdicts. Scoped tokens only see their namespaces' events.

    Request ids are the clients' choice, so they are namespaced here: a `request_id`
    whose events lie in more than one namespace (a tenant reused another's id) answers
    409 `ambiguous_request_id` naming them, and the caller adds `namespace`."""
    if namespace is not None:
        require_read(principal, namespace)
    scope = None if principal.is_admin else principal.namespaces
    types = tuple(t[:64] for t in (type or ()))[:32]
    correlation = None if request_id is None else correlation_for(request_id)
    await wait_audit_caught_up(ctx)
    if correlation is not None and namespace is None:
        spans = await request_namespaces(ctx.audit, correlation, scope)
        if len(spans) > 1:
            raise ApiError(409, "ambiguous_request_id",
                           f"request id {request_id!r} was sent in {len(spans)} namespaces "
                           f"({', '.join(spans)}): request ids are chosen by clients, so "
                           "give the namespace too (--ns)", namespaces=spans)
    return await query_audit(ctx.audit, AuditFilter(
        namespace=namespace, worker=worker, actor=actor, types=types, verdict=verdict,
        since_ms=since, until_ms=until, scope=scope, correlation_id=correlation), page)
