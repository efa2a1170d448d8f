"""Quarantine: versions the data plane's watchdog took out of service, and lifts.

The record lives on the worker (so promote and rollback can refuse a
quarantined version, and the state service sees it with the worker record it
already caches) and in one `quarantine` hash, so operators list every
quarantine without scanning namespaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from eventlog import events as ev
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.workers import WorkerRules


class QuarantineRules(WorkerRules):
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.VersionQuarantined: "_quarantined",
        ev.QuarantineLifted: "_lifted",
    }

    def _quarantined(self, e: ev.VersionQuarantined, env: Envelope, out: Changes) -> int:
        w = self._worker(e.namespace, e.worker)
        version = w.versions.get(e.version_id)
        if version is None or version.deleted:
            raise Reject("version_missing",
                         f"version {e.version_id} of {e.namespace}/{e.worker} does not exist")
        if e.version_id in w.quarantined:
            raise Reject("already_quarantined", f"version {e.version_id} is already quarantined")
        record = {"namespace": e.namespace, "worker": e.worker, "version_id": e.version_id,
                  "reason": e.reason, "strikes": e.strikes, "detail": e.detail,
                  "at": env.occurred_at, "by": env.actor}
        w.quarantined[e.version_id] = record
        w.version += 1
        w.updated_at = env.occurred_at
        out.set(keys.QUARANTINE, f"{e.namespace}/{e.worker}/{e.version_id}", dumps(record))
        self._render_worker(e.namespace, e.worker, w, out)
        return w.version

    def _lifted(self, e: ev.QuarantineLifted, env: Envelope, out: Changes) -> int:
        w = self._worker(e.namespace, e.worker, allow_deleted=True)
        if w.quarantined.pop(e.version_id, None) is None:
            raise Reject("not_quarantined",
                         f"version {e.version_id} of {e.namespace}/{e.worker} is not quarantined")
        w.version += 1
        w.updated_at = env.occurred_at
        out.delete(keys.QUARANTINE, f"{e.namespace}/{e.worker}/{e.version_id}")
        self._render_worker(e.namespace, e.worker, w, out)
        return w.version
