"""Hosts: which namespace (and worker) a host pattern routes to."""

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
class HostState:
    version: int = 0
    namespace: str | None = None
    worker: str | None = None
    match: str = "exact"


class HostRules(FoldCore):
    """Folds host claims and releases."""

    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.HostClaimed: "_host_claimed",
        ev.HostReleased: "_host_released",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.HOST: "_host_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.hosts: dict[str, HostState] = {}

    def _host_version(self, aggregate_id: str) -> int:
        state = self.hosts.get(aggregate_id)
        return 0 if state is None else state.version

    def _host_claimed(self, e: ev.HostClaimed, env: Envelope, out: Changes) -> int:
        h = self.hosts.setdefault(e.pattern, HostState())
        if h.namespace is not None and h.namespace != e.namespace:
            raise Reject("host_claimed", f"{e.pattern} is claimed by another namespace")
        h.namespace, h.worker, h.match = e.namespace, e.worker, e.match
        h.version += 1
        out.set(keys.HOSTS, e.pattern, dumps({
            "namespace": e.namespace, "worker": e.worker, "match": e.match,
            "version": h.version,
        }))
        return h.version

    def _host_released(self, e: ev.HostReleased, env: Envelope, out: Changes) -> int:
        h = self.hosts.get(e.pattern)
        if h is None or h.namespace is None:
            raise Reject("host_not_claimed", f"{e.pattern} is not claimed")
        if h.namespace != e.namespace:
            raise Reject("host_claimed", f"{e.pattern} is claimed by another namespace")
        h.namespace = h.worker = None
        h.version += 1
        out.delete(keys.HOSTS, e.pattern)
        return h.version
