"""Hosts: which namespace owns a host, and which worker each of its patterns routes to.

One namespace owns a host and every path under it (docs/hosts.md). Every event of a
host is keyed by the host, so this partition sees them all and judges ownership
alone: a claim of any pattern of a host another namespace holds is refused
(`host_claimed`), whatever its path or match. A DNS proof (`host.verified`) makes
its namespace the verified owner and outranks claims: an unverified or outdated
holder loses its patterns. Releasing the last pattern gives the host up.

Events written at schema v1 with a path were keyed by the whole pattern
(`keyed_by_pattern`): they may sit on another partition than their host, so they are
folded by the v1 rules (one namespace per identical pattern) to keep their verdicts
and aggregate versions, and have no effect on routing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.envelope import Envelope
from eventlog.hostnames import host_of
from projections import keys
from projections.changes import Changes
from projections.fold.core import FoldCore, Reject
from projections.fold.encoding import dumps


@dataclass(slots=True)
class HostState:
    version: int = 0
    namespace: str | None = None  # the owner
    verified: bool = False  # the owner proved it holds the host's DNS
    patterns: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # -> worker, match


@dataclass(slots=True)
class LegacyPattern:
    version: int = 0
    namespace: str | None = None


class HostRules(FoldCore):
    """Folds host claims, releases and ownership proofs."""

    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.HostClaimed: "_host_claimed",
        ev.HostReleased: "_host_released",
        ev.HostVerified: "_host_verified",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.HOST: "_host_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.hosts: dict[str, HostState] = {}
        self.legacy_patterns: dict[str, LegacyPattern] = {}

    def _host_version(self, aggregate_id: str) -> int:
        state: HostState | LegacyPattern | None = (
            self.legacy_patterns.get(aggregate_id) if "/" in aggregate_id
            else self.hosts.get(aggregate_id))
        return 0 if state is None else state.version

    def _owner(self, out: Changes, host: str, h: HostState) -> None:
        """Who holds `host`, claims or not (what the API checks before it appends)."""
        if h.namespace is None:
            out.delete(keys.HOST_OWNERS, host)
        else:
            out.set(keys.HOST_OWNERS, host, dumps({
                "namespace": h.namespace, "verified": h.verified, "version": h.version}))

    def _write(self, out: Changes, h: HostState, pattern: str) -> None:
        worker, match = h.patterns[pattern]
        out.set(keys.HOSTS, pattern, dumps({
            "namespace": h.namespace, "worker": worker, "match": match,
            "version": h.version, "verified": h.verified,
        }))

    def _host_claimed(self, e: ev.HostClaimed, env: Envelope, out: Changes) -> int:
        if e.keyed_by_pattern:
            return self._legacy(e, claim=True)
        host = host_of(e.pattern)
        h = self.hosts.setdefault(host, HostState())
        if h.namespace is not None and h.namespace != e.namespace:
            raise Reject("host_claimed", f"{host} belongs to another namespace, with every "
                                         "path under it")
        h.namespace = e.namespace
        h.patterns[e.pattern] = (e.worker, e.match)
        h.version += 1
        self._write(out, h, e.pattern)
        self._owner(out, host, h)
        return h.version

    def _host_released(self, e: ev.HostReleased, env: Envelope, out: Changes) -> int:
        if e.keyed_by_pattern:
            return self._legacy(e, claim=False)
        host = host_of(e.pattern)
        h = self.hosts.get(host)
        if h is None or e.pattern not in h.patterns:
            raise Reject("host_not_claimed", f"{e.pattern} is not claimed")
        if h.namespace != e.namespace:
            raise Reject("host_claimed", f"{e.pattern} is claimed by another namespace")
        del h.patterns[e.pattern]
        if not h.patterns:  # the last pattern gives the host up, proof included
            h.namespace, h.verified = None, False
        h.version += 1
        out.delete(keys.HOSTS, e.pattern)
        self._owner(out, host, h)
        return h.version

    def _host_verified(self, e: ev.HostVerified, env: Envelope, out: Changes) -> int:
        h = self.hosts.setdefault(e.host, HostState())
        if h.namespace != e.namespace:
            # The proof outranks whoever held the host without it (or with an older one).
            for pattern in h.patterns:
                out.delete(keys.HOSTS, pattern)
            h.patterns = {}
        h.namespace, h.verified = e.namespace, True
        h.version += 1
        for pattern in h.patterns:
            self._write(out, h, pattern)
        self._owner(out, e.host, h)
        return h.version

    def _legacy(self, e: ev.HostClaimed | ev.HostReleased, *, claim: bool) -> int:
        """The v1 rules for a v1 event keyed by its pattern: verdicts, no effect."""
        p = self.legacy_patterns.setdefault(e.pattern, LegacyPattern())
        if claim:
            if p.namespace is not None and p.namespace != e.namespace:
                raise Reject("host_claimed", f"{e.pattern} is claimed by another namespace")
            p.namespace = e.namespace
        else:
            if p.namespace is None:
                raise Reject("host_not_claimed", f"{e.pattern} is not claimed")
            if p.namespace != e.namespace:
                raise Reject("host_claimed", f"{e.pattern} is claimed by another namespace")
            p.namespace = None
        p.version += 1
        return p.version
