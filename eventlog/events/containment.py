"""Containment events (aggregate kind `namespace`): strikes and the namespace hold.

The data plane's watchdog blames a *namespace* for each workerd process it had
to kill or lost (docs/containment.md): a strike is an event, so strikes survive
a state-service restart, every replica counts the same ones, the audit shows
them and a rebuild keeps them. The fold holds the namespace back (its requests
refused before tenant code runs) once `hold_after` strikes fall within
`window_s` of one another, judged by the events' own times; only an operator
lifts a hold. A new version changes nothing: strikes belong to the namespace.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from eventlog import validation as v
from eventlog.errors import InvalidEvent
from eventlog.events.namespaces import NamespaceScoped

StrikeKind = Literal["hang", "crash"]
MAX_HOLD_AFTER = 1000
MAX_WINDOW_S = 7 * 24 * 3600


class NamespaceStruck(NamespaceScoped, frozen=True, kw_only=True):
    """A workerd process hung or died with this namespace as its only suspect.

    `hold_after` and `window_s` are the watchdog's policy when it struck: the fold
    judges with the policy the event was written under, so replays agree."""

    TYPE: ClassVar[str] = "namespace.struck"

    worker: str
    version_id: str | None = None
    reason: StrikeKind
    precise: bool = False  # the culprit was announced (probation), not inferred
    instance: str = ""
    detail: str = ""
    hold_after: int = 3
    window_s: int = 600

    def validate(self) -> None:
        super().validate()
        v.name("worker", self.worker)
        if self.version_id is not None:
            v.identifier("version_id", self.version_id)
        if self.reason not in ("hang", "crash"):
            raise InvalidEvent("reason", "must be hang or crash")
        v.text("instance", self.instance, max_len=128, allow_empty=True)
        v.text("detail", self.detail, max_len=2000, allow_empty=True)
        if type(self.hold_after) is not int or not 1 <= self.hold_after <= MAX_HOLD_AFTER:
            raise InvalidEvent("hold_after", f"must be an integer in 1..{MAX_HOLD_AFTER}")
        if type(self.window_s) is not int or not 1 <= self.window_s <= MAX_WINDOW_S:
            raise InvalidEvent("window_s", f"must be an integer in 1..{MAX_WINDOW_S}")


class NamespaceQuarantineLifted(NamespaceScoped, frozen=True, kw_only=True):
    """An operator lets a held namespace serve again; its strikes start over."""

    TYPE: ClassVar[str] = "namespace.quarantine_lifted"

    note: str = ""

    def validate(self) -> None:
        super().validate()
        v.text("note", self.note, max_len=2000, allow_empty=True)


ContainmentEvent = NamespaceStruck | NamespaceQuarantineLifted

CLASSES: tuple[type[ContainmentEvent], ...] = (NamespaceStruck, NamespaceQuarantineLifted)
