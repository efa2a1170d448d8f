"""Quarantine events (aggregate kind `worker`): a version taken out of service.

The data plane's watchdog appends `worker.version_quarantined` after a version
was blamed for K hangs or crashes of a workerd process (docs/containment.md);
an operator lifts it. A quarantined version answers 503 `version_quarantined`
until it is lifted or another version is promoted.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from eventlog import validation as v
from eventlog.errors import InvalidEvent
from eventlog.events.workers import _WorkerEvent

IncidentKind = Literal["hang", "crash", "operator"]


class VersionQuarantined(_WorkerEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "worker.version_quarantined"

    version_id: str
    reason: IncidentKind
    strikes: int
    detail: str = ""

    def validate(self) -> None:
        super().validate()
        v.identifier("version_id", self.version_id)
        if self.reason not in ("hang", "crash", "operator"):
            raise InvalidEvent("reason", "must be one of hang, crash, operator")
        if type(self.strikes) is not int or not 0 <= self.strikes <= 1000:
            raise InvalidEvent("strikes", "must be an integer in 0..1000")
        v.text("detail", self.detail, max_len=2000, allow_empty=True)


class QuarantineLifted(_WorkerEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "worker.quarantine_lifted"

    version_id: str
    note: str = ""

    def validate(self) -> None:
        super().validate()
        v.identifier("version_id", self.version_id)
        v.text("note", self.note, max_len=2000, allow_empty=True)


QuarantineEvent = VersionQuarantined | QuarantineLifted

CLASSES: tuple[type[QuarantineEvent], ...] = (VersionQuarantined, QuarantineLifted)
