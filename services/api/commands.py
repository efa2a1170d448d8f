"""The write path: envelope → append → wait for the projected verdict.

Every mutation builds its envelope completely (and encodes it, checking the
size) before anything is written, so a refused request leaves the log as it
was. With an `Idempotency-Key`, the first event that used the key answers a
retry: found through the projection's idempotency map while its verdict is in
the window, through the audit table after that, and finally through the
fold itself, which rejects a racing second use as `duplicate_idempotency_key`.
"""

from __future__ import annotations

import contextlib
import logging
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from eventlog.envelope import Envelope
from eventlog.events import Event
from eventlog.partitioning import partition_for
from eventlog.port import EventLog
from projections.audit_models import AuditEvent
from projections.reader import VerdictTimeout
from services.api.auth import Principal
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.request_ids import current_correlation_id

log = logging.getLogger("wdl.api")
IDEMPOTENCY_KEY_RE = re.compile(r"[\x21-\x7e]{1,200}")


@dataclass(frozen=True)
class Outcome:
    envelope: Envelope
    partition: int
    offset: int
    accepted: bool
    code: str | None
    message: str
    aggregate_version: int
    replayed: bool = False

    @property
    def event_id(self) -> str:
        return str(self.envelope.event_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "type": self.envelope.type,
            "position": {"partition": self.partition, "offset": self.offset},
            "verdict": {"accepted": self.accepted, "code": self.code, "message": self.message},
            "aggregate_version": self.aggregate_version,
            "replayed": self.replayed,
        }

    def refusal(self, **extra: Any) -> ApiError:
        return ApiError(409, self.code or "rejected", self.message, event_id=self.event_id,
                        position={"partition": self.partition, "offset": self.offset},
                        replayed=self.replayed, **extra)

    def require_accepted(self, **extra: Any) -> Outcome:
        if not self.accepted:
            raise self.refusal(**extra)
        return self


def idempotency_key(principal: Principal, header: str | None, suffix: str = "") -> str | None:
    """Keys are scoped to the token, so two tokens can never collide."""
    if header is None:
        return None
    if IDEMPOTENCY_KEY_RE.fullmatch(header) is None:
        raise ApiError(400, "invalid_idempotency_key",
                       "Idempotency-Key must be 1-200 printable ASCII characters",
                       field="Idempotency-Key")
    return f"{principal.token_id}:{header}{suffix}"


def build(ctx: ApiContext, principal: Principal, payload: Event, *,
          idempotency: str | None = None, expected_version: int | None = None,
          expected_generation: int | None = None) -> Envelope:
    """Validate and encode (InvalidEvent / EventTooLarge) without writing anything; 429
    when the tenant's namespace writes too often (services/api/ratelimit.py)."""
    if not principal.is_admin:
        ctx.writes.take(str(getattr(payload, "namespace", "") or principal.actor))
    envelope = Envelope.new(payload, actor=principal.actor, expected_version=expected_version,
                            expected_generation=expected_generation,
                            idempotency_key=idempotency,
                            correlation_id=current_correlation_id())
    ctx.log.prepare(envelope)
    return envelope


async def submit(ctx: ApiContext, envelope: Envelope) -> Outcome:
    """Append once (unless the idempotency key already answered) and await the verdict."""
    if envelope.idempotency_key is not None:
        first = await first_outcome(ctx, envelope)
        if first is not None:
            return first
    event_id = str(envelope.event_id)
    # Watched before the append: the projector's notification of the event carries its
    # verdict, and must not arrive before anyone listens for it.
    with ctx.reader.expect_verdict(
            event_id, partition_for(envelope.partition_key, ctx.log.partitions)) as watch:
        position = await ctx.log.append(envelope)
        log.info("appended %s", envelope.type, extra={
            "event_id": event_id, "partition": position.partition, "offset": position.offset})
        try:
            verdict = await ctx.reader.wait_verdict(event_id, position.partition,
                                                    position.offset, ctx.verdict_timeout_s,
                                                    watch=watch)
        except VerdictTimeout:
            raise ApiError(504, "verdict_timeout",
                           "the event was appended but its verdict is not projected yet; "
                           f"poll GET /v1/events/{event_id}",
                           event_id=event_id,
                           position={"partition": position.partition,
                                     "offset": position.offset}) from None
    if not verdict.accepted:
        log.info("rejected %s: %s", envelope.type, verdict.code, extra={
            "event_id": event_id, "code": verdict.code})
    elif ctx.propagate is not None:
        await ctx.propagate()
    if verdict.code == "duplicate_idempotency_key" and envelope.idempotency_key is not None:
        first = await first_outcome(ctx, envelope)
        if first is not None:
            return first
    return Outcome(envelope, verdict.partition, verdict.offset, verdict.accepted,
                   verdict.code, verdict.message, verdict.aggregate_version)


async def read_envelope(log: EventLog, partition: int, offset: int) -> Envelope | None:
    records = log.read({partition: offset}, until={partition: offset + 1})
    async with contextlib.aclosing(records):
        async for record in records:
            return record.envelope
    return None


async def first_outcome(ctx: ApiContext, envelope: Envelope) -> Outcome | None:
    key = envelope.idempotency_key
    assert key is not None
    partition = partition_for(envelope.partition_key, ctx.log.partitions)
    found: tuple[int, int, bool, str | None, str, int] | None = None
    event_id = await ctx.reader.idempotent_event(key, partition)
    if event_id is not None:
        verdict = await ctx.reader.verdict(event_id, partition)
        if verdict is not None:
            found = (verdict.partition, verdict.offset, verdict.accepted, verdict.code,
                     verdict.message, verdict.aggregate_version)
    if found is None:
        found = await _first_in_audit(ctx, key, partition)
    if found is None:
        return None
    p, o, accepted, code, message, version = found
    original = await read_envelope(ctx.log, p, o)
    if original is None:
        return None
    if original.type != envelope.type or original.aggregate_id != envelope.aggregate_id:
        raise ApiError(422, "idempotency_key_reused",
                       "this Idempotency-Key was used for a different request",
                       field="Idempotency-Key", event_id=str(original.event_id))
    return Outcome(original, p, o, accepted, code, message, version, replayed=True)


async def _first_in_audit(ctx: ApiContext, key: str, partition: int,
                          ) -> tuple[int, int, bool, str | None, str, int] | None:
    generation = await ctx.audit.current_generation()
    table = AuditEvent.__table__
    stmt = (select(table.c.log_partition, table.c.log_offset, table.c.accepted,
                   table.c.reason_code, table.c.reason, table.c.aggregate_version)
            .where(table.c.idempotency_key == key, table.c.log_partition == partition)
            .order_by(table.c.log_offset).limit(1))
    async with ctx.audit.connect(generation) as conn:
        row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    return (int(row[0]), int(row[1]), bool(row[2]), row[3],
            row[4] or "accepted", int(row[5]))


async def find_verdict(ctx: ApiContext, event_id: uuid.UUID,
                       partition: int | None = None) -> Outcome | None:
    """The outcome of any event by id (for clients polling after a 504)."""
    candidates = [partition] if partition is not None else list(range(ctx.log.partitions))
    for p in candidates:
        verdict = await ctx.reader.verdict(str(event_id), p)
        if verdict is None:
            continue
        original = await read_envelope(ctx.log, verdict.partition, verdict.offset)
        if original is not None and original.event_id == event_id:
            return Outcome(original, verdict.partition, verdict.offset, verdict.accepted,
                           verdict.code, verdict.message, verdict.aggregate_version)
    generation = await ctx.audit.current_generation()
    table = AuditEvent.__table__
    stmt = (select(table.c.log_partition, table.c.log_offset, table.c.accepted,
                   table.c.reason_code, table.c.reason, table.c.aggregate_version)
            .where(table.c.event_id == event_id).order_by(table.c.log_partition,
                                                          table.c.log_offset).limit(1))
    async with ctx.audit.connect(generation) as conn:
        row = (await conn.execute(stmt)).first()
    if row is None:
        return None
    original = await read_envelope(ctx.log, int(row[0]), int(row[1]))
    if original is None:
        return None
    return Outcome(original, int(row[0]), int(row[1]), bool(row[2]), row[3],
                   row[4] or "accepted", int(row[5]))
