"""Cron run events: scheduler actions on the scheduler lease's aggregate (kind `lease`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from eventlog import validation as v
from eventlog.errors import InvalidEvent
from eventlog.events.leases import _LeaseEvent
from eventlog.precondition import Precondition


class _CronEvent(_LeaseEvent, frozen=True, kw_only=True):
    """A scheduler action on one slot of one trigger.

    Its aggregate is the scheduler's lease, so it lands on the lease's
    partition and the fold can check the holder's generation: a replica that
    lost its lease cannot claim or report anything (it fails closed).
    """

    namespace: str
    worker: str
    version_id: str
    cron: str
    slot_ms: int

    def validate(self) -> None:
        super().validate()
        v.name("namespace", self.namespace)
        v.name("worker", self.worker)
        v.identifier("version_id", self.version_id)
        v.cron("cron", self.cron)
        v.positive("slot_ms", self.slot_ms)

    def check_precondition(self, precondition: Precondition) -> None:
        self._require_generation(precondition)


class CronSlotClaimed(_CronEvent, frozen=True, kw_only=True):
    """The lease holder takes a slot before dispatching it: at most one claim per slot."""

    TYPE: ClassVar[str] = "cron.slot_claimed"


# `skipped`: the run waited on its namespace's fair share of the dispatcher until the
# slot left the catch-up window (docs/security.md, "Fair shares").
CronStatus = Literal["ok", "error", "timeout", "skipped"]


class CronRunCompleted(_CronEvent, frozen=True, kw_only=True):
    """Outcome of a dispatched slot."""

    TYPE: ClassVar[str] = "cron.run_completed"

    status: CronStatus
    duration_ms: int
    error: str = ""
    # How long after its slot the run started, when later than the scheduler's lateness
    # bound (0: on time): a run that waited is recorded as late, not as on time.
    late_ms: int = 0

    def validate(self) -> None:
        super().validate()
        if self.status not in ("ok", "error", "timeout", "skipped"):
            raise InvalidEvent("status", f"{self.status!r} is not ok, error, timeout "
                               "or skipped")
        v.non_negative("duration_ms", self.duration_ms)
        v.non_negative("late_ms", self.late_ms)
        v.text("error", self.error, max_len=2048, allow_empty=True)


CronEvent = CronSlotClaimed | CronRunCompleted

CLASSES: tuple[type[CronEvent], ...] = (CronSlotClaimed, CronRunCompleted)
