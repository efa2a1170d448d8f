"""Owner leases: holder, generation fencing and expiry by the event's own clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import FoldCore, Reject
from projections.fold.encoding import dumps


@dataclass(slots=True)
class LeaseState:
    version: int = 0
    holder: str | None = None
    generation: int = 0
    expires_at: int = 0
    released: bool = True


class LeaseRules(FoldCore):
    """Folds lease events."""

    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.LeaseAcquired: "_lease_acquired",
        ev.LeaseRenewed: "_lease_renewed",
        ev.LeaseReleased: "_lease_released",
        ev.LeaseTakenOver: "_lease_taken_over",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.LEASE: "_lease_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.leases: dict[str, LeaseState] = {}

    def _lease_version(self, aggregate_id: str) -> int:
        state = self.leases.get(aggregate_id)
        return 0 if state is None else state.version

    def _lease_state(self, scope: str) -> LeaseState:
        return self.leases.setdefault(scope, LeaseState())

    @staticmethod
    def _check_generation(lease: LeaseState, env: Envelope) -> None:
        expected = env.precondition.expected_generation
        if expected != lease.generation:
            raise Reject("stale_generation",
                         f"lease is at generation {lease.generation}, the event expected "
                         f"{expected}")

    def _lease_acquired(self, e: ev.LeaseAcquired, env: Envelope, out: Changes) -> int:
        lease = self._lease_state(e.scope)
        self._check_generation(lease, env)
        if not lease.released and lease.expires_at > env.occurred_at:
            raise Reject("lease_held", f"lease {e.scope} is held by {lease.holder}")
        return self._grant(lease, e, env, out)

    def _lease_taken_over(self, e: ev.LeaseTakenOver, env: Envelope, out: Changes) -> int:
        lease = self._lease_state(e.scope)
        self._check_generation(lease, env)
        return self._grant(lease, e, env, out)

    def _grant(self, lease: LeaseState, e: ev.LeaseAcquired | ev.LeaseTakenOver,
               env: Envelope, out: Changes) -> int:
        lease.holder = e.holder
        lease.generation = e.generation
        lease.expires_at = e.expires_at
        lease.released = False
        lease.version += 1
        self._render_lease(e.scope, lease, out)
        return lease.version

    def _check_holder(self, lease: LeaseState, e: ev.LeaseRenewed | ev.LeaseReleased,
                      env: Envelope) -> None:
        self._check_generation(lease, env)
        if lease.released or lease.holder != e.holder:
            raise Reject("lease_not_held", f"{e.holder} does not hold lease {e.scope}")

    def _lease_renewed(self, e: ev.LeaseRenewed, env: Envelope, out: Changes) -> int:
        lease = self._lease_state(e.scope)
        self._check_holder(lease, e, env)
        if lease.expires_at <= env.occurred_at:
            # Fail closed: once expired, another holder may already act on it.
            raise Reject("lease_expired", f"lease {e.scope} expired before the renewal")
        lease.expires_at = e.expires_at
        lease.version += 1
        self._render_lease(e.scope, lease, out)
        return lease.version

    def _lease_released(self, e: ev.LeaseReleased, env: Envelope, out: Changes) -> int:
        lease = self._lease_state(e.scope)
        self._check_holder(lease, e, env)
        lease.released = True
        lease.version += 1
        self._render_lease(e.scope, lease, out)
        return lease.version

    def _render_lease(self, scope: str, lease: LeaseState, out: Changes) -> None:
        out.set(keys.LEASES, scope, dumps({
            "holder": None if lease.released else lease.holder,
            "generation": lease.generation, "expires_at": lease.expires_at,
            "released": lease.released, "version": lease.version,
        }))
