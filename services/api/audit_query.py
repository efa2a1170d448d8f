"""Audit queries: filters, keyset pagination with an opaque cursor.

Rows come by the time the API stamped on the event, then by log position
(which breaks ties and keeps the order stable across pages).
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Query
from sqlalchemy import ColumnElement, Select, and_, literal, or_, select, tuple_

from projections.audit_models import AuditEvent
from projections.audit_store import AuditStore
from services import tenant_json
from services.api.context import ApiContext
from services.api.errors import ApiError

MAX_LIMIT = 1000


@dataclass(frozen=True)
class AuditFilter:
    namespace: str | None = None
    worker: str | None = None
    actor: str | None = None
    types: tuple[str, ...] = ()
    verdict: str | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    scope: frozenset[str] | None = None
    """The namespaces a scoped token may see (None: every row)."""
    correlation_id: uuid.UUID | None = None


@dataclass(frozen=True)
class PageParams:
    limit: int
    cursor: str | None


def _page(limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
          cursor: Annotated[str | None, Query(max_length=512)] = None) -> PageParams:
    return PageParams(limit, cursor)


Page = Annotated[PageParams, Depends(_page)]


def _encode_cursor(values: list[int]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, size: int) -> list[int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values = tenant_json.loads(raw)
    except ValueError:
        values = None
    if (not isinstance(values, list) or len(values) != size
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in values)):
        raise ApiError(400, "invalid_cursor", "the cursor is not one this API returned",
                       field="cursor")
    return values


def _filtered(f: AuditFilter) -> Select[Any]:
    t = AuditEvent.__table__
    stmt = select(t)
    conds: list[ColumnElement[bool]] = []
    if f.scope is not None:
        conds.append(t.c.namespace.in_(sorted(f.scope)))
    if f.namespace is not None:
        conds.append(t.c.namespace == f.namespace)
    if f.worker is not None:
        conds.append(t.c.worker == f.worker)
    if f.actor is not None:
        conds.append(t.c.actor == f.actor)
    if f.types:
        conds.append(or_(*(t.c.event_type == ty if "." in ty
                           else t.c.event_type.like(f"%.{ty}") for ty in f.types)))
    if f.verdict == "accepted":
        conds.append(t.c.accepted.is_(True))
    elif f.verdict == "rejected":
        conds.append(t.c.accepted.is_(False))
    elif f.verdict is not None:
        conds.append(t.c.reason_code == f.verdict)
    if f.correlation_id is not None:
        conds.append(t.c.correlation_id == f.correlation_id)
    if f.since_ms is not None:
        conds.append(t.c.occurred_at_ms >= f.since_ms)
    if f.until_ms is not None:
        conds.append(t.c.occurred_at_ms < f.until_ms)
    return stmt.where(and_(*conds)) if conds else stmt


def _row(r: Any) -> dict[str, Any]:
    return {
        "event_id": str(r.event_id), "type": r.event_type, "namespace": r.namespace,
        "worker": r.worker, "actor": r.actor, "accepted": bool(r.accepted),
        "code": r.reason_code, "reason": r.reason, "aggregate_kind": r.aggregate_kind,
        "aggregate_id": r.aggregate_id, "aggregate_version": r.aggregate_version,
        "occurred_at_ms": r.occurred_at_ms,
        "correlation_id": None if r.correlation_id is None else str(r.correlation_id),
        "position": {"partition": r.log_partition, "offset": r.log_offset},
        "payload": r.payload,
    }


async def query_audit(audit: AuditStore, f: AuditFilter, page: PageParams) -> dict[str, Any]:
    t = AuditEvent.__table__
    key_cols = [t.c.occurred_at_ms, t.c.log_partition, t.c.log_offset]
    stmt = _filtered(f)
    if page.cursor is not None:
        after = _decode_cursor(page.cursor, len(key_cols))
        stmt = stmt.where(tuple_(*key_cols) > tuple_(*(literal(v) for v in after)))
    stmt = stmt.order_by(*key_cols).limit(page.limit + 1)
    generation = await audit.current_generation()
    async with audit.connect(generation) as conn:
        rows = (await conn.execute(stmt)).all()
    more = len(rows) > page.limit
    rows = rows[:page.limit]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        values = [last.occurred_at_ms, last.log_partition, last.log_offset]
        next_cursor = _encode_cursor([int(v) for v in values])
    return {"items": [_row(r) for r in rows], "next_cursor": next_cursor}


async def request_namespaces(audit: AuditStore, correlation_id: uuid.UUID,
                             scope: frozenset[str] | None, limit: int = 10) -> list[str]:
    """The namespaces whose events carry `correlation_id` (at most `limit`, within
    `scope`). A request id is the client's choice, so two tenants may send the same one:
    a query by request id that spans namespaces is ambiguous, never one request."""
    t = AuditEvent.__table__
    conds: list[ColumnElement[bool]] = [t.c.correlation_id == correlation_id,
                                        t.c.namespace.is_not(None)]
    if scope is not None:
        conds.append(t.c.namespace.in_(sorted(scope)))
    stmt = select(t.c.namespace).where(and_(*conds)).distinct().order_by(
        t.c.namespace).limit(limit)
    generation = await audit.current_generation()
    async with audit.connect(generation) as conn:
        return [str(r.namespace) for r in (await conn.execute(stmt)).all()]


async def wait_audit_caught_up(ctx: ApiContext) -> None:
    """Read-your-writes for audit reads: wait (bounded) until the audit tables have
    applied at least what the Redis projection has, which every verdict a client
    received is part of."""
    target = await ctx.reader.applied()
    deadline = time.monotonic() + ctx.audit_catch_up_s
    while True:
        applied = await ctx.audit.applied(await ctx.audit.current_generation())
        if all(applied.get(p, 0) >= o for p, o in target.items()):
            return
        if time.monotonic() >= deadline:
            return  # serve what is there rather than fail a read
        await asyncio.sleep(0.02)
