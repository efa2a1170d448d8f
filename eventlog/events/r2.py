"""R2 bucket events (aggregate kind `r2`): the control half of R2.

Objects are tenant data (services/r2), never on the control log.
"""

from __future__ import annotations

from typing import ClassVar

from eventlog import validation as v
from eventlog.aggregates import AggregateKind
from eventlog.events.resources import ResourceDeletion, ResourceEvent


class _R2Event(ResourceEvent, frozen=True, kw_only=True):
    KIND: ClassVar[AggregateKind] = AggregateKind.R2_BUCKET

    def validate_name(self) -> None:
        v.bucket_name("name", self.name)


class R2BucketCreated(_R2Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "r2.bucket_created"


class R2BucketDeleted(ResourceDeletion, _R2Event, frozen=True, kw_only=True):
    TYPE: ClassVar[str] = "r2.bucket_deleted"


R2Event = R2BucketCreated | R2BucketDeleted

CLASSES: tuple[type[R2Event], ...] = (R2BucketCreated, R2BucketDeleted)
