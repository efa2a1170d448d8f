"""Namespace events (aggregate kind `namespace`)."""

from __future__ import annotations

from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.events.base import BaseEvent, _no_generation
from eventlog.precondition import Precondition


class NamespaceScoped(BaseEvent, frozen=True, kw_only=True):
    """An event of one namespace's aggregate: it shares the namespace's version (writers
    can state the version they saw) and its partition. Policies and containment build
    on it too."""

    namespace: str

    def aggregate(self) -> tuple[AggregateKind, str]:
        return AggregateKind.NAMESPACE, self.namespace

    def validate(self) -> None:
        v.name("namespace", self.namespace)

    def check_precondition(self, precondition: Precondition) -> None:
        _no_generation(self, precondition)


class NamespaceCreated(NamespaceScoped, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "namespace.created"

    description: str = ""

    def validate(self) -> None:
        super().validate()
        v.text("description", self.description, max_len=1024, allow_empty=True)


NamespaceEvent = NamespaceCreated

CLASSES: tuple[type[NamespaceEvent], ...] = (NamespaceCreated,)
