"""KV namespaces (aggregate kind `kv`): the shared resource rules, registered for KV."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from projections.fold.resources import ResourceRules


class KvRules(ResourceRules):
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.KvNamespaceCreated: "_resource_created",
        ev.KvNamespaceDeleted: "_resource_deleted",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.KV_NAMESPACE: "_kv_version"}

    def _kv_version(self, aggregate_id: str) -> int:
        return self._resource_version(AggregateKind.KV_NAMESPACE, aggregate_id)
