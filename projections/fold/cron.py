"""Cron runs: slots claimed and completed by the scheduler lease's holder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.leases import LeaseRules, LeaseState

# Recent cron slots kept per worker (claims dedupe against these; runs are listed from them).
CRON_RUNS_KEPT = 200


class CronRules(LeaseRules):
    """Folds cron events; they are events of the scheduler's lease, fenced by its holder."""

    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.CronSlotClaimed: "_slot_claimed",
        ev.CronRunCompleted: "_run_completed",
    }

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.cron_runs: dict[str, dict[str, dict[str, Any]]] = {}

    def _fenced(self, e: ev.CronSlotClaimed | ev.CronRunCompleted, env: Envelope) -> LeaseState:
        """A write by the scheduler is valid only from the lease's current holder."""
        lease = self._lease_state(e.scope)
        self._check_generation(lease, env)
        if lease.released or lease.holder != e.holder:
            raise Reject("lease_not_held", f"{e.holder} does not hold lease {e.scope}")
        if lease.expires_at <= env.occurred_at:
            raise Reject("lease_expired", f"lease {e.scope} expired")
        return lease

    def _slot_claimed(self, e: ev.CronSlotClaimed, env: Envelope, out: Changes) -> int:
        lease = self._fenced(e, env)
        owner = f"{e.namespace}/{e.worker}"
        slot = f"{e.slot_ms}|{e.cron}"
        runs = self.cron_runs.setdefault(owner, {})
        if slot in runs:
            raise Reject("slot_already_claimed", f"slot {slot} of {owner} was already claimed")
        runs[slot] = {"status": "claimed", "version_id": e.version_id, "holder": e.holder,
                      "generation": e.generation, "claimed_at": env.occurred_at,
                      "duration_ms": None, "error": ""}
        out.set(keys.cron_runs(e.namespace, e.worker), slot, dumps(runs[slot]))
        if len(runs) > CRON_RUNS_KEPT:
            oldest = min(runs, key=_slot_order)
            del runs[oldest]
            out.delete(keys.cron_runs(e.namespace, e.worker), oldest)
        lease.version += 1
        self._render_lease(e.scope, lease, out)
        return lease.version

    def _run_completed(self, e: ev.CronRunCompleted, env: Envelope, out: Changes) -> int:
        lease = self._fenced(e, env)
        slot = f"{e.slot_ms}|{e.cron}"
        run = self.cron_runs.get(f"{e.namespace}/{e.worker}", {}).get(slot)
        if run is None or run["status"] != "claimed":
            raise Reject("slot_not_claimed", f"slot {slot} is not claimed and running")
        run.update(status=e.status, duration_ms=e.duration_ms, error=e.error,
                   completed_at=env.occurred_at)
        if e.late_ms:
            run["late_ms"] = e.late_ms
        out.set(keys.cron_runs(e.namespace, e.worker), slot, dumps(run))
        lease.version += 1
        self._render_lease(e.scope, lease, out)
        return lease.version


def _slot_order(slot: str) -> tuple[int, str]:
    ms, _, cron = slot.partition("|")
    return int(ms), cron
