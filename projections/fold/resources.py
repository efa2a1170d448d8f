"""What every tenant-resource kind folds the same way: create, delete, in-use checks.

A kind's module (kv.py, r2.py, …) names its events and aggregate kind; the
rules here keep each resource's state, the namespace's set of existing names
(which versions' bindings are checked against) and the `res:{kind}:{ns}` hash.
"""

from __future__ import annotations

from dataclasses import dataclass

from eventlog.bindings import spec as binding_spec
from eventlog.envelope import Envelope
from eventlog.events import ResourceDeletion, ResourceEvent
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.workers import WorkerRules


@dataclass(slots=True)
class ResourceState:
    version: int = 0
    exists: bool = False
    created_at: int = 0
    created_by: str = ""


class ResourceRules(WorkerRules):
    """Extends WorkerRules: a delete must know which active versions bind the resource."""

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.resources: dict[tuple[str, str, str], ResourceState] = {}

    def _resource_version(self, kind: str, aggregate_id: str) -> int:
        ns, _, name = aggregate_id.partition("/")
        state = self.resources.get((kind, ns, name))
        return 0 if state is None else state.version

    def _label(self, kind: str, ns: str, name: str) -> str:
        spec = binding_spec(kind)
        return f"{spec.label if spec else kind} {name!r} of namespace {ns}"

    def _resource_created(self, e: ResourceEvent, env: Envelope, out: Changes) -> int:
        kind = str(e.KIND)
        names = self._namespace(e.namespace).resources.setdefault(kind, set())
        state = self.resources.setdefault((kind, e.namespace, e.name), ResourceState())
        if state.exists:
            raise Reject("resource_exists", f"{self._label(kind, e.namespace, e.name)} "
                                            "already exists")
        state.exists = True
        state.created_at = env.occurred_at
        state.created_by = env.actor
        state.version += 1
        names.add(e.name)
        out.set(keys.resources(kind, e.namespace), e.name, dumps({
            "created_at": state.created_at, "created_by": state.created_by,
            "version": state.version}))
        return state.version

    def _resource_deleted(self, e: ResourceDeletion, env: Envelope, out: Changes) -> int:
        kind = str(e.KIND)
        ns_state = self._namespace(e.namespace)
        state = self.resources.get((kind, e.namespace, e.name))
        if state is None or not state.exists:
            raise Reject("resource_not_found",
                         f"{self._label(kind, e.namespace, e.name)} does not exist")
        if not e.force:
            users = self._bound_by_active(kind, e.namespace, e.name)
            if users:
                raise Reject("resource_in_use",
                             f"{self._label(kind, e.namespace, e.name)} is bound by the "
                             f"active version of {', '.join(users)}; promote versions "
                             "without it first, or delete with force")
        state.exists = False
        state.version += 1
        ns_state.resources.get(kind, set()).discard(e.name)
        out.delete(keys.resources(kind, e.namespace), e.name)
        return state.version

    def _bound_by_active(self, kind: str, ns: str, name: str) -> list[str]:
        """Workers of `ns` whose serving version binds resource (kind, name)."""
        users = []
        for (wns, worker), w in self.workers.items():
            if wns != ns or w.deleted or w.purged or w.active is None:
                continue
            for b in w.versions[w.active].bindings or ():
                if b["kind"] == kind and b["target"] == name:
                    users.append(worker)
                    break
        return sorted(users)
