"""KV namespace events (aggregate kind `kv`): the control half of Workers KV.

The values themselves are tenant data (services/kv), never on the control log.
"""

from __future__ import annotations

from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.events.resources import ResourceDeletion, ResourceEvent


class _KvEvent(ResourceEvent, frozen=True, kw_only=True):
    KIND: ClassVar[AggregateKind] = AggregateKind.KV_NAMESPACE

    def validate_name(self) -> None:
        v.kv_name("name", self.name)


class KvNamespaceCreated(_KvEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "kv.namespace_created"

    title: str = ""

    def validate(self) -> None:
        super().validate()
        v.text("title", self.title, max_len=512, allow_empty=True)


class KvNamespaceDeleted(ResourceDeletion, _KvEvent, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "kv.namespace_deleted"


KvEvent = KvNamespaceCreated | KvNamespaceDeleted

CLASSES: tuple[type[KvEvent], ...] = (KvNamespaceCreated, KvNamespaceDeleted)
