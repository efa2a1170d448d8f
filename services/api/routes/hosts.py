"""Custom host patterns of a namespace: list, claim, release, prove (docs/hosts.md).

One namespace owns a host and every path under it. A claim is refused here, before
anything is appended, when the pattern names a platform name (the platform domain
and its subdomains, IP literals, local names: 400 `host_reserved`) or a host another
namespace holds (409 `host_claimed`); the fold refuses the same claim if a race got
past this check, so the log stays the arbiter.
"""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Path

from eventlog.errors import InvalidEvent
from eventlog.events import HostClaimed, HostReleased, HostVerified
from eventlog.hostnames import normalize_pattern, reserved_reason, split_pattern, under_domain
from eventlog.validation import host_pattern
from services.api import hostproof
from services.api.auth import Auth
from services.api.commands import build, idempotency_key, submit
from services.api.context import ApiContext
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
HostName = Annotated[str, Path(max_length=253, description="a host name, without path")]


def canonical(ctx: ApiContext, pattern: str) -> str:
    """The pattern's canonical form, or 400: `host_reserved` naming why no tenant may
    hold its host, `invalid_event` when it is no host pattern at all."""
    try:
        pattern = normalize_pattern(pattern)
    except InvalidEvent as exc:
        raise ApiError(400, exc.code, exc.message, field="pattern") from None
    host, _ = split_pattern(pattern)
    domain = ctx.hosts.domain
    if under_domain(host, domain):
        raise ApiError(400, "host_reserved", f"{host} is under the platform domain {domain}: "
                       f"namespaces are reached at https://<namespace>.{domain}/, and no "
                       "claim may take a name of it", field="pattern")
    reason = reserved_reason(host)
    try:
        host_pattern("pattern", pattern, claimable=False)
    except InvalidEvent as exc:
        # An IPv6 literal is no DNS name either, but say what it is.
        if reason is None or not reason.startswith("an IP"):
            raise ApiError(400, exc.code, exc.message, field="pattern") from None
    if reason is not None:
        raise ApiError(400, "host_reserved", f"{host} is {reason}: it belongs to no tenant",
                       field="pattern")
    return pattern


async def owners(ctx: ApiContext, host: str) -> set[str]:
    """The namespaces holding `host` in the projection: its owner (a proof without a
    claim counts) and those of its patterns (a projection from before host owners)."""
    owner = await ctx.reader.host_owner(host)
    return {str(doc.get("namespace")) for pattern, doc in (await ctx.reader.hosts()).items()
            if split_pattern(pattern)[0] == host} | (
        set() if owner is None else {str(owner["namespace"])})


@router.get("", responses=READ_ERRORS)
async def list_hosts(ns: Namespace, ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    await namespace_doc(ctx, principal, ns)
    return [{"pattern": pattern, "match": doc.get("match"), "worker": doc.get("worker"),
             "version": doc.get("version"), "verified": bool(doc.get("verified"))}
            for pattern, doc in sorted((await ctx.reader.hosts()).items())
            if doc.get("namespace") == ns]


@router.post("", response_model=CommandResult, responses=WRITE_ERRORS)
async def claim_host(ns: Namespace, body: HostClaimRequest, ctx: Ctx, principal: Auth,
                     idem: IdemKey = None) -> dict[str, Any]:
    """Claim `pattern` (exact or prefix) for this namespace, optionally for one worker.

    A host held by another namespace, with every path under it, is refused (409
    `host_claimed`); so are platform names (400 `host_reserved`). Where verification
    is on, the claim routes once the namespace proved the host's DNS (`.../verify`).
    """
    await namespace_doc(ctx, principal, ns, write=True)
    pattern = canonical(ctx, body.pattern)
    host, _ = split_pattern(pattern)
    if await owners(ctx, host) - {ns}:
        raise ApiError(409, "host_claimed", f"{host} belongs to another namespace, with every "
                       "path under it")
    async with ctx.quota_locks.hold("hosts", ns):  # counted and written in turn
        claims = {p for p, doc in (await ctx.reader.hosts()).items()
                  if doc.get("namespace") == ns}
        if pattern not in claims:
            ctx.quotas.check("hosts", len(claims), f"namespace {ns}",
                             way_out="release a host claim first")
        # No expected version: the fold judges ownership on the host's partition.
        env = build(ctx, principal, HostClaimed(pattern=pattern, namespace=ns,
                                                match=body.match, worker=body.worker),
                    idempotency=idempotency_key(principal, idem))
        return (await submit(ctx, env)).require_accepted().as_dict()


@router.get("/{host}/challenge", responses=READ_ERRORS)
async def host_challenge(ns: Namespace, host: HostName, ctx: Ctx,
                         principal: Auth) -> dict[str, Any]:
    """The TXT record that proves this namespace holds `host`'s DNS."""
    await namespace_doc(ctx, principal, ns)
    host = split_pattern(canonical(ctx, host))[0]
    return {"host": host, "record": hostproof.record_name(host), "type": "TXT",
            "value": hostproof.challenge(ctx.hosts.domain, host, ns),
            "required": ctx.hosts.verification}


@router.post("/{host}/verify", response_model=CommandResult, responses={
    **WRITE_ERRORS, 422: WRITE_ERRORS[422] | {"description": "the TXT record is missing"},
    502: WRITE_ERRORS[503] | {"description": "the DNS resolver did not answer"}})
async def verify_host(ns: Namespace, host: HostName, ctx: Ctx, principal: Auth,
                      idem: IdemKey = None) -> dict[str, Any]:
    """Look up `_wdl-challenge.<host>`; when it holds this namespace's challenge, record
    the proof (`host.verified`): the namespace becomes the host's verified owner, and a
    holder without a proof loses its claims."""
    await namespace_doc(ctx, principal, ns, write=True)
    host = split_pattern(canonical(ctx, host))[0]
    record = hostproof.record_name(host)
    expected = hostproof.challenge(ctx.hosts.domain, host, ns)
    try:
        values = await hostproof.txt_values(record, ctx.hosts.resolver)
    except hostproof.ProofUnavailable as exc:
        raise ApiError(502, "dns_unavailable", f"the DNS lookup of {record} failed: {exc}",
                       record=record) from None
    if expected not in values:
        raise ApiError(422, "host_not_verified",
                       f"no TXT record {record} holds {expected} (found "
                       f"{len(values)} other value(s)): publish it, then verify again",
                       record=record, value=expected)
    env = build(ctx, principal, HostVerified(host=host, namespace=ns, record=record,
                                             challenge=expected),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.delete("/{pattern:path}", response_model=CommandResult, responses=WRITE_ERRORS)
async def release_host(ns: Namespace, pattern: Annotated[str, Path(max_length=512)], ctx: Ctx,
                       principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    with contextlib.suppress(InvalidEvent):  # a pattern that does not normalize: 404 below
        pattern = normalize_pattern(pattern)
    current = (await ctx.reader.hosts()).get(pattern)
    if current is None or current.get("namespace") != ns:
        raise ApiError(404, "host_not_found", f"host pattern {pattern!r} is not claimed "
                       "by this namespace")
    host, _ = split_pattern(pattern)
    env = build(ctx, principal, HostReleased(pattern=pattern, namespace=ns),
                idempotency=idempotency_key(principal, idem),
                expected_version=await ctx.reader.aggregate_version("host", host))
    return (await submit(ctx, env)).require_accepted().as_dict()
