"""Owner leases as a client primitive: every change is an event with an expected generation.

The generation only grows (acquire and takeover move it to expected + 1) and
the fold judges expiry by each event's own time, so a holder that was fenced
off learns it on its next renew or fenced write — the verdict is a refusal —
and must stop acting (fail closed). No lock service is involved: the log is
the arbiter.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventlog import events as ev
from eventlog.envelope import Envelope
from eventlog.port import EventLog
from projections.reader import ProjectionReader, VerdictView
from services.scheduler.clock import Clock


@dataclass(frozen=True)
class LeaseView:
    scope: str
    holder: str | None
    generation: int
    expires_at: int

    def held_by(self, holder: str, now_ms: int) -> bool:
        return self.holder == holder and self.expires_at > now_ms

    def free(self, now_ms: int) -> bool:
        return self.holder is None or self.expires_at <= now_ms


class LeaseLost(Exception):
    """This holder's generation is stale or its lease expired: stop acting."""

    code = "lease_lost"


class LeaseClient:
    def __init__(self, log: EventLog, reader: ProjectionReader, clock: Clock, *,
                 actor: str, verdict_timeout_s: float = 10.0) -> None:
        self.log = log
        self.reader = reader
        self.clock = clock
        self.actor = actor
        self.verdict_timeout_s = verdict_timeout_s

    async def view(self, scope: str) -> LeaseView:
        doc = await self.reader.lease(scope)
        if doc is None:
            return LeaseView(scope, None, 0, 0)
        return LeaseView(scope, doc["holder"], int(doc["generation"]), int(doc["expires_at"]))

    async def submit(self, payload: ev.Event, expected_generation: int) -> VerdictView:
        envelope = Envelope.new(payload, actor=self.actor, occurred_at=self.clock.now_ms(),
                                expected_generation=expected_generation)
        position = await self.log.append(envelope)
        return await self.reader.wait_verdict(str(envelope.event_id), position.partition,
                                              position.offset, self.verdict_timeout_s)

    async def acquire(self, scope: str, holder: str, ttl_ms: int) -> int | None:
        """Take a free or expired lease; returns the new generation, or None if refused."""
        current = await self.view(scope)
        now = self.clock.now_ms()
        if not current.free(now):
            return None
        gen = current.generation + 1
        verdict = await self.submit(ev.LeaseAcquired(
            scope=scope, holder=holder, generation=gen, ttl_ms=ttl_ms,
            expires_at=now + ttl_ms), current.generation)
        return gen if verdict.accepted else None

    async def renew(self, scope: str, holder: str, generation: int, ttl_ms: int) -> None:
        now = self.clock.now_ms()
        verdict = await self.submit(ev.LeaseRenewed(
            scope=scope, holder=holder, generation=generation, ttl_ms=ttl_ms,
            expires_at=now + ttl_ms), generation)
        if not verdict.accepted:
            raise LeaseLost(f"renew of {scope} refused: {verdict.code}")

    async def release(self, scope: str, holder: str, generation: int) -> bool:
        verdict = await self.submit(ev.LeaseReleased(scope=scope, holder=holder,
                                                     generation=generation), generation)
        return verdict.accepted

    async def take_over(self, scope: str, holder: str, ttl_ms: int,
                        expected_generation: int) -> VerdictView:
        """Operator takeover: fences off whoever holds generation `expected_generation`."""
        current = await self.view(scope)
        now = self.clock.now_ms()
        return await self.submit(ev.LeaseTakenOver(
            scope=scope, holder=holder, generation=expected_generation + 1, ttl_ms=ttl_ms,
            expires_at=now + ttl_ms, previous_holder=current.holder or "nobody"),
            expected_generation)
