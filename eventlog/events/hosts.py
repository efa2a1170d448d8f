"""Host routing events (aggregate kind `host`)."""

from __future__ import annotations

from typing import ClassVar, Literal

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.errors import InvalidEvent
from eventlog.events.base import BaseEvent, _no_generation
from eventlog.precondition import Precondition

HostMatch = Literal["exact", "prefix"]


class _HostEvent(BaseEvent, frozen=True, kw_only=True):
    pattern: str
    namespace: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.HOST, self.pattern

    def validate(self) -> None:
        v.host_pattern("pattern", self.pattern)
        v.name("namespace", self.namespace)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class HostClaimed(_HostEvent, frozen=True, kw_only=True):
    """Route `pattern` (host with optional path) to a namespace.

    `exact` matches the host (and path, if given) exactly; `prefix` matches
    requests whose host+path starts with the pattern.
    """

    TYPE: ClassVar[str] = "host.claimed"

    match: HostMatch = "exact"
    worker: str | None = None
    """The worker that serves the pattern; None routes like the namespace host
    (the first path segment names the worker)."""

    def validate(self) -> None:
        super().validate()
        if self.worker is not None:
            v.name("worker", self.worker)
        if self.match not in ("exact", "prefix"):
            raise InvalidEvent("match", f"{self.match!r} is not 'exact' or 'prefix'")


class HostReleased(_HostEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "host.released"


HostEvent = HostClaimed | HostReleased

CLASSES: tuple[type[HostEvent], ...] = (HostClaimed, HostReleased)
