"""Workers and versions: list, show, promote, rollback, delete, purge, history."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from eventlog.events import (
    VersionDeleted,
    VersionPromoted,
    WorkerDeleted,
    WorkerPurged,
    WorkerRolledBack,
    WorkerTagsSet,
)
from services.api.audit_query import AuditFilter, Page, query_audit, wait_audit_caught_up
from services.api.auth import Auth
from services.api.commands import build, idempotency_key, submit
from services.api.errors import ApiError
from services.api.gc import collect_after_purge, version_digests
from services.api.models import (
    ID_PATTERN,
    TAG_PATTERN,
    CommandResult,
    PromoteRequest,
    RollbackRequest,
    TagsRequest,
)
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    WorkerName,
    namespace_and_worker_docs,
    namespace_doc,
    worker_doc,
)
from services.scheduler.scheduler import runs_of

router = APIRouter(prefix="/v1/namespaces/{ns}/workers", tags=["workers"])
VersionId = Annotated[str, Path(pattern=ID_PATTERN)]
TagQuery = Annotated[str | None, Query(pattern=TAG_PATTERN,
                                       description="only the workers with this script tag")]


def _worker_view(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "active_version": doc.get("active_version"),
            "previous_version": doc.get("previous_version"), "deleted": doc.get("deleted"),
            "versions": doc.get("versions"), "version": doc.get("version"),
            "created_at": doc.get("created_at"), "updated_at": doc.get("updated_at"),
            "tags": doc.get("tags") or []}


def _version_view(vid: str, meta: dict[str, Any], active: str | None) -> dict[str, Any]:
    return {"version_id": vid, "active": vid == active, "deleted": meta.get("deleted"),
            "uploaded_at": meta.get("uploaded_at"), "uploaded_by": meta.get("uploaded_by"),
            "bundle_sha256": meta.get("bundle_sha256"), "bundle_size": meta.get("bundle_size"),
            "main_module": meta.get("main_module"), "modules": meta.get("modules"),
            "compatibility_date": meta.get("compatibility_date"),
            "compatibility_flags": meta.get("compatibility_flags"),
            "vars": meta.get("vars"), "bindings": meta.get("bindings"),
            "cron_triggers": meta.get("cron_triggers"),
            "tag": meta.get("tag") or "", "message": meta.get("message") or ""}


@router.get("", responses=READ_ERRORS)
async def list_workers(ns: Namespace, ctx: Ctx, principal: Auth,
                       tag: TagQuery = None) -> list[dict[str, Any]]:
    """Workers of a namespace with their active version (`tag`: those with that tag)."""
    await namespace_doc(ctx, principal, ns)
    docs = await ctx.reader.workers(ns)
    return [_worker_view(name, doc) for name, doc in sorted(docs.items())
            if tag is None or tag in (doc.get("tags") or ())]


@router.delete("", responses=WRITE_ERRORS)
async def delete_tagged(ns: Namespace, ctx: Ctx, principal: Auth,
                        tag: Annotated[str, Query(pattern=TAG_PATTERN)]) -> dict[str, Any]:
    """Soft-delete every worker of this namespace with the script tag `tag`: each one an
    ordinary `worker.deleted` (Workers for Platforms' delete-by-tag)."""
    await namespace_doc(ctx, principal, ns, write=True)
    docs = await ctx.reader.workers(ns)
    deleted: list[str] = []
    refused: list[dict[str, Any]] = []
    for name, doc in sorted(docs.items()):
        if doc.get("deleted") or tag not in (doc.get("tags") or ()):
            continue
        env = build(ctx, principal, WorkerDeleted(namespace=ns, worker=name),
                    expected_version=doc["version"])
        result = await submit(ctx, env)
        if result.accepted:
            deleted.append(name)
        else:
            refused.append({"worker": name, **result.as_dict()})
    return {"tag": tag, "deleted": deleted, "refused": refused}


@router.put("/{worker}/tags", responses=WRITE_ERRORS)
async def set_tags(ns: Namespace, worker: WorkerName, body: TagsRequest, ctx: Ctx,
                   principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    """Replace a worker's script tags (at most 8; Workers for Platforms, docs/platforms.md)."""
    await namespace_doc(ctx, principal, ns, write=True)
    doc = await worker_doc(ctx, ns, worker)
    env = build(ctx, principal, WorkerTagsSet(namespace=ns, worker=worker,
                                              tags=tuple(body.tags)),
                idempotency=idempotency_key(principal, idem), expected_version=doc["version"])
    outcome = (await submit(ctx, env)).require_accepted()
    return {**outcome.as_dict(), "tags": body.tags}


@router.get("/{worker}", responses=READ_ERRORS)
async def show_worker(ns: Namespace, worker: WorkerName, ctx: Ctx,
                      principal: Auth) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns)
    return _worker_view(worker, await worker_doc(ctx, ns, worker))


@router.get("/{worker}/cron-runs", responses=READ_ERRORS)
async def cron_runs(ns: Namespace, worker: WorkerName, ctx: Ctx,
                    principal: Auth) -> list[dict[str, Any]]:
    """Recent cron slots of a worker (newest first): claimed, ok, error, timeout or
    skipped; `late_ms` when a run started later than the scheduler's bound."""
    await namespace_doc(ctx, principal, ns)
    await worker_doc(ctx, ns, worker)
    return runs_of(await ctx.reader.cron_runs(ns, worker))


@router.get("/{worker}/versions", responses=READ_ERRORS)
async def list_versions(ns: Namespace, worker: WorkerName, ctx: Ctx,
                        principal: Auth) -> list[dict[str, Any]]:
    """Every version, oldest first (version ids are time-ordered)."""
    await namespace_doc(ctx, principal, ns)
    doc = await worker_doc(ctx, ns, worker)
    versions = await ctx.reader.versions(ns, worker)
    return [_version_view(vid, meta, doc.get("active_version"))
            for vid, meta in sorted(versions.items())]


@router.get("/{worker}/versions/{version_id}", responses=READ_ERRORS)
async def show_version(ns: Namespace, worker: WorkerName, version_id: VersionId, ctx: Ctx,
                       principal: Auth) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns)
    doc = await worker_doc(ctx, ns, worker)
    meta = await ctx.reader.version(ns, worker, version_id)
    if meta is None:
        raise ApiError(404, "version_not_found", f"version {version_id} not found")
    return _version_view(version_id, meta, doc.get("active_version"))


@router.post("/{worker}/promote", response_model=CommandResult, responses=WRITE_ERRORS)
async def promote(ns: Namespace, worker: WorkerName, body: PromoteRequest, ctx: Ctx,
                  principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    """Make a version the active one. Races are settled by the fold: `stale_version`."""
    _, doc = await namespace_and_worker_docs(ctx, principal, ns, worker, write=True)
    expected = body.expected_version if body.expected_version is not None else doc["version"]
    env = build(ctx, principal, VersionPromoted(namespace=ns, worker=worker,
                                                version_id=body.version_id),
                idempotency=idempotency_key(principal, idem), expected_version=expected)
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.post("/{worker}/rollback", response_model=CommandResult, responses=WRITE_ERRORS)
async def rollback(ns: Namespace, worker: WorkerName, body: RollbackRequest, ctx: Ctx,
                   principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    """Activate `to`, or by default the previously active version."""
    _, doc = await namespace_and_worker_docs(ctx, principal, ns, worker, write=True)
    target = body.to or doc.get("previous_version")
    if target is None:
        raise ApiError(409, "no_previous_version",
                       f"worker {ns}/{worker} has no previous version to roll back to")
    expected = body.expected_version if body.expected_version is not None else doc["version"]
    env = build(ctx, principal, WorkerRolledBack(namespace=ns, worker=worker,
                                                 version_id=target, reason=body.reason),
                idempotency=idempotency_key(principal, idem), expected_version=expected)
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.delete("/{worker}/versions/{version_id}", response_model=CommandResult,
               responses=WRITE_ERRORS)
async def delete_version(ns: Namespace, worker: WorkerName, version_id: VersionId, ctx: Ctx,
                         principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    """Delete an inactive version (409 `version_active` while it serves traffic)."""
    await namespace_doc(ctx, principal, ns, write=True)
    doc = await worker_doc(ctx, ns, worker)
    env = build(ctx, principal, VersionDeleted(namespace=ns, worker=worker,
                                               version_id=version_id),
                idempotency=idempotency_key(principal, idem), expected_version=doc["version"])
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.delete("/{worker}", response_model=CommandResult, responses=WRITE_ERRORS)
async def delete_worker(ns: Namespace, worker: WorkerName, ctx: Ctx, principal: Auth,
                        idem: IdemKey = None) -> dict[str, Any]:
    """Soft delete: stops routing and crons; versions and bundles are kept."""
    await namespace_doc(ctx, principal, ns, write=True)
    doc = await worker_doc(ctx, ns, worker)
    env = build(ctx, principal, WorkerDeleted(namespace=ns, worker=worker),
                idempotency=idempotency_key(principal, idem), expected_version=doc["version"])
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.post("/{worker}/purge", responses=WRITE_ERRORS)
async def purge_worker(ns: Namespace, worker: WorkerName, ctx: Ctx, principal: Auth,
                       idem: IdemKey = None) -> dict[str, Any]:
    """Hard delete of a soft-deleted worker, then blob GC of what nothing else references."""
    await namespace_doc(ctx, principal, ns, write=True)
    doc = await worker_doc(ctx, ns, worker)
    candidates: set[str] = set()
    for meta in (await ctx.reader.versions(ns, worker)).values():
        candidates |= version_digests(meta)
    env = build(ctx, principal, WorkerPurged(namespace=ns, worker=worker),
                idempotency=idempotency_key(principal, idem), expected_version=doc["version"])
    outcome = (await submit(ctx, env)).require_accepted()
    # Only now, with the purge accepted, may bundles go.
    deleted = await collect_after_purge(ctx.reader, ctx.blobs, candidates)
    return {**outcome.as_dict(), "blobs_deleted": len(deleted)}


@router.get("/{worker}/history", responses=READ_ERRORS)
async def worker_history(ns: Namespace, worker: WorkerName, ctx: Ctx, principal: Auth,
                         page: Page) -> dict[str, Any]:
    """Every event of one worker, in log order, with its verdict (paginated)."""
    await namespace_doc(ctx, principal, ns)
    await wait_audit_caught_up(ctx)
    return await query_audit(ctx.audit, AuditFilter(namespace=ns, worker=worker), page)
