"""Host routing events (aggregate kind `host`).

The aggregate is the *host*: one namespace owns a host and every path under it, so
every claim, release and proof of one host shares its partition and the fold can
judge "this host belongs to another namespace" on that partition alone (DESIGN
invariant 2). The pattern (host with an optional path) is a field.

Schema v1 keyed each event by its whole pattern, so the claims of one host could
land on different partitions and no fold could see them together. A v1 event whose
pattern has a path is read with `keyed_by_pattern = True` (its envelope's aggregate
id is that pattern): the fold keeps its verdict and gives it no effect (docs/hosts.md,
"Logs written before host ownership"). A v1 event on a bare host was keyed by the host
already and reads as a v2 event.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.errors import InvalidEvent
from eventlog.events.base import BaseEvent, _no_generation
from eventlog.hostnames import host_of
from eventlog.precondition import Precondition

HostMatch = Literal["exact", "prefix"]
CHALLENGE_MAX = 256


class _HostEvent(BaseEvent, frozen=True, kw_only=True):
    SCHEMA_VERSION: ClassVar[int] = 2

    pattern: str
    namespace: str
    keyed_by_pattern: bool = False
    """Only on events written at schema v1 with a path (set by their upcaster): their
    aggregate, and so their partition, is the whole pattern. The API never sets it."""

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.HOST, self.pattern if self.keyed_by_pattern else host_of(
            self.pattern)

    def validate(self) -> None:
        v.host_pattern("pattern", self.pattern)
        v.name("namespace", self.namespace)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class HostClaimed(_HostEvent, frozen=True, kw_only=True):
    """Route `pattern` (host with optional path) to a namespace.

    `exact` matches the host (and path, if given) exactly; `prefix` matches
    requests whose host+path starts with the pattern. Refused when another
    namespace holds any pattern of the host.
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

    def validate(self) -> None:
        # Any claimed pattern may be given up, one on a name no tenant may claim today too.
        v.host_pattern("pattern", self.pattern, claimable=False)
        v.name("namespace", self.namespace)


class HostVerified(BaseEvent, frozen=True, kw_only=True):
    """A DNS ownership proof: the TXT record `record` held `challenge`, the value tied to
    this host and namespace (services/api/hostproof.py), when the API looked it up.

    It makes the namespace the host's verified owner: a proof outranks a claim, so an
    unverified holder of the host (a squatter) loses its claims. Where verification is
    required (production), only a verified owner's claims route.
    """

    TYPE: ClassVar[str] = "host.verified"

    host: str
    namespace: str
    record: str
    challenge: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.HOST, self.host

    def validate(self) -> None:
        v.host_name("host", self.host)
        v.name("namespace", self.namespace)
        v.text("record", self.record, max_len=CHALLENGE_MAX)
        v.text("challenge", self.challenge, max_len=CHALLENGE_MAX)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


HostEvent = HostClaimed | HostReleased | HostVerified

CLASSES: tuple[type[HostEvent], ...] = (HostClaimed, HostReleased, HostVerified)
