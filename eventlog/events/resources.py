"""What every tenant-resource event shares: a named resource inside a namespace.

A resource kind (KV namespace, R2 bucket, later D1 database, queue, ...) is its
own aggregate kind with id `namespace/name`, keyed by the namespace so it lands
on the namespace's partition: there the fold can check that a version's
bindings name existing resources and that a deleted resource is not bound.
"""

from __future__ import annotations

from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind, resource_aggregate_id
from eventlog.events.base import BaseEvent, _no_generation
from eventlog.precondition import Precondition


class ResourceEvent(BaseEvent, frozen=True, kw_only=True):
    KIND: ClassVar[AggregateKind]

    namespace: str
    name: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        return self.KIND, resource_aggregate_id(self.namespace, self.name)

    def validate(self) -> None:
        v.name("namespace", self.namespace)
        self.validate_name()

    def validate_name(self) -> None:
        raise NotImplementedError

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class ResourceDeletion(ResourceEvent, frozen=True, kw_only=True):
    force: bool = False
    """Delete even if an active version binds it (those bindings then fail at call time)."""
