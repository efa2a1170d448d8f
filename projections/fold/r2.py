"""R2 buckets (aggregate kind `r2`): the shared resource rules, registered for R2."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from projections.fold.resources import ResourceRules


class R2Rules(ResourceRules):
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.R2BucketCreated: "_resource_created",
        ev.R2BucketDeleted: "_resource_deleted",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.R2_BUCKET: "_r2_version"}

    def _r2_version(self, aggregate_id: str) -> int:
        return self._resource_version(AggregateKind.R2_BUCKET, aggregate_id)
