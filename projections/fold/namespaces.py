"""Namespaces: existence, description and namespace-scoped secret names."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import FoldCore, Reject
from projections.fold.encoding import dumps


@dataclass(slots=True)
class NamespaceState:
    version: int = 0
    exists: bool = False
    created_at: int = 0
    description: str = ""
    secrets: set[str] = field(default_factory=set)
    # Tenant resources that exist, by kind ("kv", "r2", ...): versions' bindings
    # are checked against these (projections/fold/resources.py keeps them).
    resources: dict[str, set[str]] = field(default_factory=dict)
    egress: dict[str, Any] | None = None  # None: the default policy (public)
    grants: list[dict[str, str]] = field(default_factory=list)
    limits: dict[str, int] | None = None  # None: platform defaults
    # The watchdog's strikes (occurred_at, ms) within their window, and the hold they
    # led to (projections/fold/containment.py).
    strikes: list[int] = field(default_factory=list)
    held: dict[str, Any] | None = None


class NamespaceRules(FoldCore):
    """Folds namespace events; other aggregates check namespaces through `_namespace`."""

    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.NamespaceCreated: "_namespace_created",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.NAMESPACE: "_namespace_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.namespaces: dict[str, NamespaceState] = {}

    def _namespace_version(self, aggregate_id: str) -> int:
        state = self.namespaces.get(aggregate_id)
        return 0 if state is None else state.version

    def _namespace(self, name: str) -> NamespaceState:
        state = self.namespaces.get(name)
        if state is None or not state.exists:
            raise Reject("namespace_missing", f"namespace {name!r} does not exist")
        return state

    def _namespace_created(self, e: ev.NamespaceCreated, env: Envelope, out: Changes) -> int:
        state = self.namespaces.setdefault(e.namespace, NamespaceState())
        if state.exists:
            raise Reject("namespace_exists", f"namespace {e.namespace!r} already exists")
        state.exists = True
        state.created_at = env.occurred_at
        state.description = e.description
        state.version += 1
        self._render_namespace(e.namespace, state, out)
        return state.version

    def _render_namespace(self, name: str, s: NamespaceState, out: Changes) -> None:
        doc: dict[str, Any] = {
            "created_at": s.created_at, "description": s.description, "version": s.version,
        }
        # Only when set: a namespace without policies renders as it always did.
        if s.egress is not None:
            doc["egress"] = s.egress
        if s.grants:
            doc["grants"] = s.grants
        if s.limits is not None:
            doc["limits"] = s.limits
        if s.held is not None:
            doc["held"] = s.held
        out.set(keys.NAMESPACES, name, dumps(doc))
