"""Owner lease events (aggregate kind `lease`), fenced by a generation."""

from __future__ import annotations

from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.errors import InvalidEvent
from eventlog.events.base import BaseEvent
from eventlog.precondition import Precondition


class _LeaseEvent(BaseEvent, frozen=True, kw_only=True):
    scope: str
    holder: str
    generation: int

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.LEASE, self.scope

    def validate(self) -> None:
        v.lease_scope("scope", self.scope)
        v.identifier("holder", self.holder)
        v.positive("generation", self.generation)

    def _expected_generation(self, precondition: Precondition) -> int:
        got = precondition.expected_generation
        if got is None:
            raise InvalidEvent("precondition.expected_generation", f"{self.TYPE} requires it")
        v.non_negative("precondition.expected_generation", got)
        return got

    def _require_generation(self, precondition: Precondition) -> None:
        """The lease keeps its generation: renew and release act on the current one."""
        expected = self._expected_generation(precondition)
        if self.generation != expected:
            raise InvalidEvent(
                "generation", f"{self.TYPE} must carry the expected generation {expected}"
            )

    def _require_next_generation(self, precondition: Precondition) -> None:
        """A new holder fences the previous one off by bumping the generation."""
        expected = self._expected_generation(precondition)
        if self.generation != expected + 1:
            raise InvalidEvent(
                "generation", f"{self.TYPE} must carry generation {expected + 1} (expected + 1)"
            )


class _TimedLeaseEvent(_LeaseEvent, frozen=True, kw_only=True):
    ttl_ms: int
    expires_at: int

    def validate(self) -> None:
        super().validate()
        v.positive("ttl_ms", self.ttl_ms)
        v.positive("expires_at", self.expires_at)


class LeaseAcquired(_TimedLeaseEvent, frozen=True, kw_only=True):
    """Take a free or expired lease; the generation moves to expected + 1."""

    TYPE: ClassVar[str] = "lease.acquired"
    SCHEMA_VERSION: ClassVar[int] = 2

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_next_generation(precondition)


class LeaseRenewed(_TimedLeaseEvent, frozen=True, kw_only=True):
    """Extend a lease the holder still owns; the generation stays."""

    TYPE: ClassVar[str] = "lease.renewed"

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_generation(precondition)


class LeaseReleased(_LeaseEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "lease.released"

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_generation(precondition)


class LeaseTakenOver(_TimedLeaseEvent, frozen=True, kw_only=True):
    """Forcibly take a lease that is still held; the old holder is fenced off."""

    TYPE: ClassVar[str] = "lease.taken_over"

    previous_holder: str

    def validate(self) -> None:
        super().validate()
        v.identifier("previous_holder", self.previous_holder)

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_next_generation(precondition)


LeaseEvent = LeaseAcquired | LeaseRenewed | LeaseReleased | LeaseTakenOver

CLASSES: tuple[type[LeaseEvent], ...] = (LeaseAcquired, LeaseRenewed, LeaseReleased, LeaseTakenOver)
