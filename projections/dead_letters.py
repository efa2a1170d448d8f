"""Dead letters: records the fold could not decode or apply, kept with their bytes.

Re-driving cannot fold a record out of order (that would break determinism),
so it checks which dead letters the *current* code can now decode and, if
any, rebuilds the projections so they are folded at their original positions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from eventlog.codec import DEFAULT_CODEC
from eventlog.errors import UndecodableEvent
from eventlog.port import EventLog
from projections.audit_models import DeadLetter
from projections.audit_store import AuditStore
from projections.rebuild import rebuild
from projections.store import ProjectionStore


async def list_dead_letters(audit: AuditStore) -> list[dict[str, Any]]:
    generation = await audit.current_generation()
    async with audit.connect(generation) as conn:
        rows = (await conn.execute(select(DeadLetter).order_by(
            DeadLetter.log_partition, DeadLetter.log_offset))).all()
    return [{"partition": r.log_partition, "offset": r.log_offset, "code": r.code,
             "reason": r.reason, "size": len(r.raw), "log_timestamp_ms": r.log_timestamp_ms}
            for r in rows]


async def redrive(log: EventLog, store: ProjectionStore, audit: AuditStore) -> dict[str, Any]:
    generation = await audit.current_generation()
    async with audit.connect(generation) as conn:
        rows = (await conn.execute(select(DeadLetter.raw))).all()
    recoverable = 0
    for (raw,) in rows:
        try:
            DEFAULT_CODEC.decode(bytes(raw))
            recoverable += 1
        except UndecodableEvent:
            pass
    rebuilt = False
    remaining = len(rows)
    if recoverable:
        report = await rebuild(log, store, audit, grace_s=1.0)
        rebuilt = report.switched
        remaining = report.dead_letters
    return {"dead_letters": len(rows), "recoverable": recoverable, "rebuilt": rebuilt,
            "remaining": remaining}
