"""Shared dependencies and lookups of the route modules."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Header, Path

from services.api.auth import Principal, require_read, require_write
from services.api.context import ApiContext, get_ctx
from services.api.errors import ApiError, not_found
from services.api.models import NAME_PATTERN, ErrorBody

Ctx = Annotated[ApiContext, Depends(get_ctx)]
IdemKey = Annotated[str | None, Header(alias="Idempotency-Key", description=(
    "retries with the same key (per token) return the first outcome without a new event"))]
Namespace = Annotated[str, Path(pattern=NAME_PATTERN, description="namespace name")]
WorkerName = Annotated[str, Path(pattern=NAME_PATTERN, description="worker name")]

READ_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, unknown, revoked or expired token"},
    404: {"model": ErrorBody, "description": "not found, or outside the token's namespaces"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    400: {"model": ErrorBody, "description": "breaks a rule of the event catalogue"},
    403: {"model": ErrorBody, "description": "the token may read but not change this"},
    409: {"model": ErrorBody, "description": "refused by the fold (a precondition failed)"},
    413: {"model": ErrorBody, "description": "too large"},
    422: {"model": ErrorBody, "description": "the request does not match the schema"},
    503: {"model": ErrorBody, "description": "the event log is unavailable"},
    504: {"model": ErrorBody, "description": "appended, verdict not projected in time"},
}


async def namespace_doc(ctx: ApiContext, principal: Principal, namespace: str, *,
                        write: bool = False) -> dict[str, Any]:
    if write:
        require_write(principal, namespace)
    else:
        require_read(principal, namespace)
    doc = await ctx.reader.namespace(namespace)
    if doc is None:
        raise not_found("namespace", namespace)
    return doc


async def worker_doc(ctx: ApiContext, namespace: str, worker: str) -> dict[str, Any]:
    doc = await ctx.reader.worker(namespace, worker)
    if doc is None:
        raise ApiError(404, "worker_not_found", f"worker {namespace}/{worker} not found")
    return doc


async def namespace_and_worker_docs(ctx: ApiContext, principal: Principal, namespace: str,
                                    worker: str, *, write: bool = False,
                                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """`namespace_doc` and `worker_doc` in one read (promote and rollback's latency)."""
    if write:
        require_write(principal, namespace)
    else:
        require_read(principal, namespace)
    ns_doc, doc = await ctx.reader.namespace_and_worker(namespace, worker)
    if ns_doc is None:
        raise not_found("namespace", namespace)
    if doc is None:
        raise ApiError(404, "worker_not_found", f"worker {namespace}/{worker} not found")
    return ns_doc, doc


async def bound_by_active(ctx: ApiContext, ns: str, kind: str, target: str) -> list[str]:
    """Workers of `ns` whose active version binds the `kind` resource `target` (a resource
    they use is deleted only with force)."""
    users = []
    for worker, doc in sorted((await ctx.reader.workers(ns)).items()):
        active = doc.get("active_version")
        if not active or doc.get("deleted"):
            continue
        meta = await ctx.reader.version(ns, worker, active) or {}
        if any(b.get("kind") == kind and b.get("target") == target
               for b in meta.get("bindings") or ()):
            users.append(worker)
    return users
