"""Namespace events (aggregate kind `namespace`)."""

from __future__ import annotations

from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.events.base import BaseEvent, _no_generation
from eventlog.precondition import Precondition


class NamespaceCreated(BaseEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "namespace.created"

    namespace: str
    description: str = ""

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.NAMESPACE, self.namespace

    def validate(self) -> None:
        v.name("namespace", self.namespace)
        v.text("description", self.description, max_len=1024, allow_empty=True)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


NamespaceEvent = NamespaceCreated

CLASSES: tuple[type[NamespaceEvent], ...] = (NamespaceCreated,)
