"""Workers: uploaded versions, the active one, promotion history and deletion."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import msgspec

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.bindings import spec as binding_spec
from eventlog.envelope import Envelope
from projections import keys
from projections.changes import Changes
from projections.fold.core import Reject
from projections.fold.encoding import dumps
from projections.fold.namespaces import NamespaceRules

PROMOTION_HISTORY = 50


@dataclass(slots=True)
class VersionState:
    """An uploaded version, kept as its rendered JSON plus what later rules read of it.

    The metadata as Python objects cost several kilobytes per version (a
    rebuild holds every version ever uploaded); the JSON text is what is
    projected anyway, and a version changes only once, when it is deleted.
    """

    rendered: str  # JSON of the metadata and "deleted", as projected
    bindings: list[dict[str, Any]] | None = None  # checked when it is activated
    crons: list[str] | None = None  # rendered into `cron` while it serves
    deleted: bool = False
    off_namespace_url: bool = False  # `workers_dev = false`: rendered on the worker record

    @property
    def meta(self) -> dict[str, Any]:
        """The upload metadata (decoded from the rendered JSON; not on a hot path)."""
        meta: dict[str, Any] = msgspec.json.decode(self.rendered)
        meta.pop("deleted", None)
        return meta


@dataclass(slots=True)
class WorkerState:
    version: int = 0
    versions: dict[str, VersionState] = field(default_factory=dict)
    active: str | None = None
    history: list[str] = field(default_factory=list)
    deleted: bool = False
    purged: bool = False
    created_at: int = 0
    updated_at: int = 0
    secrets: set[str] = field(default_factory=set)
    live: int = 0  # versions not deleted
    quarantined: dict[str, dict[str, Any]] = field(default_factory=dict)  # version -> record
    tags: tuple[str, ...] = ()  # script tags (Workers for Platforms)


class WorkerRules(NamespaceRules):
    """Folds worker events; a worker lives in a namespace, so this extends NamespaceRules."""

    HANDLERS: ClassVar[Mapping[type[Any], str]] = {
        ev.WorkerVersionUploaded: "_uploaded",
        ev.VersionPromoted: "_promoted",
        ev.WorkerRolledBack: "_rolled_back",
        ev.VersionDeleted: "_version_deleted",
        ev.WorkerDeleted: "_worker_deleted",
        ev.WorkerPurged: "_worker_purged",
        ev.WorkerTagsSet: "_tags_set",
    }
    VERSIONS: ClassVar[Mapping[str, str]] = {AggregateKind.WORKER: "_worker_version"}

    def __init__(self, partition: int) -> None:
        super().__init__(partition)
        self.workers: dict[tuple[str, str], WorkerState] = {}

    def _worker_version(self, aggregate_id: str) -> int:
        ns, _, w = aggregate_id.partition("/")
        state = self.workers.get((ns, w))
        return 0 if state is None else state.version

    def _worker(self, ns: str, name: str, *, allow_deleted: bool = False) -> WorkerState:
        self._namespace(ns)
        state = self.workers.get((ns, name))
        if state is None or state.purged or (not state.versions and not state.deleted):
            raise Reject("worker_missing", f"worker {ns}/{name} does not exist")
        if state.deleted and not allow_deleted:
            raise Reject("worker_deleted", f"worker {ns}/{name} is deleted")
        return state

    def _live_version(self, w: WorkerState, e: ev.VersionPromoted | ev.WorkerRolledBack,
                      ) -> VersionState:
        version = w.versions.get(e.version_id)
        if version is None:
            raise Reject("version_missing",
                         f"version {e.version_id} of {e.namespace}/{e.worker} does not exist")
        if version.deleted:
            raise Reject("version_deleted", f"version {e.version_id} was deleted")
        return version

    def _check_targets(self, ns: str, bindings: Any) -> None:
        """Every resource-backed binding names a resource of the namespace (same
        partition)."""
        existing = self._namespace(ns).resources
        for b in bindings:
            kind, target = (b.kind, b.target) if not isinstance(b, dict) else (
                b["kind"], b["target"])
            spec = binding_spec(kind)
            if spec is not None and spec.resource and target not in existing.get(kind, ()):
                raise Reject("binding_target_missing",
                             f"{spec.label} {target!r} does not exist in namespace {ns}")

    def _uploaded(self, e: ev.WorkerVersionUploaded, env: Envelope, out: Changes) -> int:
        self._namespace(e.namespace)
        if e.bindings:
            self._check_targets(e.namespace, e.bindings)
        key = (e.namespace, e.worker)
        w = self.workers.get(key)
        if w is not None and w.deleted and not w.purged:
            raise Reject("worker_deleted",
                         f"worker {e.namespace}/{e.worker} is deleted; purge it to reuse the name")
        if w is not None and e.version_id in w.versions and not w.purged:
            raise Reject("version_exists", f"version {e.version_id} already exists")
        if w is None or w.purged:
            previous = 0 if w is None else w.version
            w = WorkerState(version=previous, created_at=env.occurred_at)
            self.workers[key] = w
        meta = msgspec.to_builtins(e)
        for drop in ("namespace", "worker"):
            meta.pop(drop, None)
        for b in meta.get("bindings") or ():
            # Service-only fields, rendered only when set: older versions render as before.
            for optional in ("namespace", "entrypoint"):
                if not b.get(optional):
                    b.pop(optional, None)
        if meta.get("workers_dev", True):
            meta.pop("workers_dev", None)  # rendered only when false: older versions as before
        if not meta.get("tail_consumers"):
            meta.pop("tail_consumers", None)  # rendered only when set, as above
        for optional in ("tag", "message"):
            # Rendered only when set, as the bindings' optional fields.
            if not meta.get(optional):
                meta.pop(optional, None)
        if meta.get("assets") is None:
            # Rendered only when set: versions without assets render as before.
            meta.pop("assets", None)
        meta["uploaded_at"] = env.occurred_at
        meta["uploaded_by"] = env.actor
        w.versions[e.version_id] = VersionState(
            dumps({**meta, "deleted": False}), meta.get("bindings") or None,
            meta.get("cron_triggers") or None, off_namespace_url=not e.workers_dev)
        w.live += 1
        w.version += 1
        w.updated_at = env.occurred_at
        self._render_version(e.namespace, e.worker, e.version_id, w, out)
        self._render_worker(e.namespace, e.worker, w, out)
        return w.version

    def _activate(self, ns: str, name: str, w: WorkerState, version_id: str,
                  env: Envelope, out: Changes) -> int:
        if w.active == version_id:
            raise Reject("already_active", f"version {version_id} is already active")
        if version_id in w.quarantined:
            raise Reject("version_quarantined",
                         f"version {version_id} of {ns}/{name} is quarantined; lift it first "
                         f"(wdl quarantine lift {ns}/{name} {version_id})")
        bindings = w.versions[version_id].bindings
        if bindings:
            # A resource may have been deleted (forced) since the upload.
            self._check_targets(ns, bindings)
        if w.active is not None:
            w.history.append(w.active)
            del w.history[:-PROMOTION_HISTORY]
        w.active = version_id
        w.version += 1
        w.updated_at = env.occurred_at
        self._render_worker(ns, name, w, out)
        return w.version

    def _promoted(self, e: ev.VersionPromoted, env: Envelope, out: Changes) -> int:
        w = self._worker(e.namespace, e.worker)
        self._live_version(w, e)
        return self._activate(e.namespace, e.worker, w, e.version_id, env, out)

    def _rolled_back(self, e: ev.WorkerRolledBack, env: Envelope, out: Changes) -> int:
        w = self._worker(e.namespace, e.worker)
        self._live_version(w, e)
        return self._activate(e.namespace, e.worker, w, e.version_id, env, out)

    def _version_deleted(self, e: ev.VersionDeleted, env: Envelope, out: Changes) -> int:
        w = self._worker(e.namespace, e.worker, allow_deleted=True)
        version = w.versions.get(e.version_id)
        if version is None or version.deleted:
            raise Reject("version_missing", f"version {e.version_id} does not exist")
        if w.active == e.version_id and not w.deleted:
            raise Reject("version_active",
                         f"version {e.version_id} is active; promote another version first")
        version.deleted = True
        # Decoded and encoded again: the same bytes as rendering the metadata
        # with "deleted": true (sorted keys; only strings, ints and lists in it).
        rendered = msgspec.json.decode(version.rendered)
        rendered["deleted"] = True
        version.rendered = dumps(rendered)
        w.live -= 1
        if w.quarantined.pop(e.version_id, None) is not None:
            out.delete(keys.QUARANTINE, f"{e.namespace}/{e.worker}/{e.version_id}")
        if w.active == e.version_id:
            w.active = None
        w.history = [h for h in w.history if h != e.version_id]
        w.version += 1
        w.updated_at = env.occurred_at
        self._render_version(e.namespace, e.worker, e.version_id, w, out)
        self._render_worker(e.namespace, e.worker, w, out)
        return w.version

    def _worker_deleted(self, e: ev.WorkerDeleted, env: Envelope, out: Changes) -> int:
        w = self._worker(e.namespace, e.worker)
        w.deleted = True
        w.version += 1
        w.updated_at = env.occurred_at
        self._render_worker(e.namespace, e.worker, w, out)
        return w.version

    def _tags_set(self, e: ev.WorkerTagsSet, env: Envelope, out: Changes) -> int:
        w = self._worker(e.namespace, e.worker)
        w.tags = tuple(e.tags)
        w.version += 1
        w.updated_at = env.occurred_at
        self._render_worker(e.namespace, e.worker, w, out)
        return w.version

    def _worker_purged(self, e: ev.WorkerPurged, env: Envelope, out: Changes) -> int:
        w = self._worker(e.namespace, e.worker, allow_deleted=True)
        if not w.deleted:
            raise Reject("worker_not_deleted",
                         f"worker {e.namespace}/{e.worker} must be deleted before it is purged")
        w.purged = True
        w.tags = ()
        w.version += 1
        w.versions.clear()
        w.live = 0
        w.secrets.clear()
        w.active = None
        w.history.clear()
        for vid in w.quarantined:
            out.delete(keys.QUARANTINE, f"{e.namespace}/{e.worker}/{vid}")
        w.quarantined.clear()
        out.drop(keys.versions(e.namespace, e.worker))
        out.drop(keys.secrets(e.namespace, e.worker))
        self._render_worker(e.namespace, e.worker, w, out)
        return w.version

    def _render_version(self, ns: str, name: str, vid: str, w: WorkerState,
                        out: Changes) -> None:
        out.set(keys.versions(ns, name), vid, w.versions[vid].rendered)

    def _render_worker(self, ns: str, name: str, w: WorkerState, out: Changes) -> None:
        cron_field = f"{ns}/{name}"
        if w.purged:
            out.delete(keys.workers(ns), name)
            out.delete(keys.routes(ns), name)
            out.delete(keys.CRON, cron_field)
            return
        previous = None
        versions, active = w.versions, w.active
        for h in reversed(w.history):  # a loop, not next(genexpr): this runs per event
            if h != active:
                v = versions.get(h)
                if v is not None and not v.deleted:
                    previous = h
                    break
        record: dict[str, Any] = {
            "active_version": w.active, "previous_version": previous,
            "version": w.version, "deleted": w.deleted, "versions": w.live,
            "created_at": w.created_at, "updated_at": w.updated_at,
        }
        if w.tags:  # likewise: only when set
            record["tags"] = list(w.tags)
        if w.quarantined:  # rendered only when set: older histories render as before
            record["quarantined"] = sorted(w.quarantined)
        serving_version = w.versions.get(w.active) if w.active is not None else None
        if serving_version is not None and serving_version.off_namespace_url:
            record["workers_dev"] = False  # likewise: only when the serving version says so
        out.set(keys.workers(ns), name, dumps(record))
        serving = w.active if not w.deleted else None
        if serving is None:
            out.delete(keys.routes(ns), name)
            out.delete(keys.CRON, cron_field)
            return
        out.set(keys.routes(ns), name, serving)
        crons = w.versions[serving].crons
        if crons:
            out.set(keys.CRON, cron_field, dumps({"version_id": serving, "crons": crons}))
        else:
            out.delete(keys.CRON, cron_field)
