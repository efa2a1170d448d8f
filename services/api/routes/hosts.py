"""Custom host patterns of a namespace: list, claim, release."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from eventlog.events import HostClaimed, HostReleased
from services.api.auth import Auth
from services.api.commands import build, idempotency_key, submit
from services.api.errors import ApiError
from services.api.models import CommandResult, HostClaimRequest
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    namespace_doc,
)

router = APIRouter(prefix="/v1/namespaces/{ns}/hosts", tags=["hosts"])


@router.get("", responses=READ_ERRORS)
async def list_hosts(ns: Namespace, ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    await namespace_doc(ctx, principal, ns)
    return [{"pattern": pattern, "match": doc.get("match"), "worker": doc.get("worker"),
             "version": doc.get("version")}
            for pattern, doc in sorted((await ctx.reader.hosts()).items())
            if doc.get("namespace") == ns]


@router.post("", response_model=CommandResult, responses=WRITE_ERRORS)
async def claim_host(ns: Namespace, body: HostClaimRequest, ctx: Ctx, principal: Auth,
                     idem: IdemKey = None) -> dict[str, Any]:
    """Claim `pattern` (exact or prefix) for this namespace, optionally for one worker.

    A pattern held by another namespace is refused by the fold (409 `host_claimed`).
    """
    await namespace_doc(ctx, principal, ns, write=True)
    current = (await ctx.reader.hosts()).get(body.pattern)
    env = build(ctx, principal, HostClaimed(pattern=body.pattern, namespace=ns,
                                            match=body.match, worker=body.worker),
                idempotency=idempotency_key(principal, idem),
                # A released pattern leaves no document, so only a held one has a version.
                expected_version=None if current is None else int(current["version"]))
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.delete("/{pattern:path}", response_model=CommandResult, responses=WRITE_ERRORS)
async def release_host(ns: Namespace, pattern: Annotated[str, Path(max_length=512)], ctx: Ctx,
                       principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    current = (await ctx.reader.hosts()).get(pattern)
    if current is None or current.get("namespace") != ns:
        raise ApiError(404, "host_not_found", f"host pattern {pattern!r} is not claimed "
                       "by this namespace")
    env = build(ctx, principal, HostReleased(pattern=pattern, namespace=ns),
                idempotency=idempotency_key(principal, idem),
                expected_version=int(current["version"]))
    return (await submit(ctx, env)).require_accepted().as_dict()
