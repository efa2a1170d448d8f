"""Static Assets uploads: which of a project's files the namespace lacks, and their bytes.

`wdl deploy` hashes every file of the assets directory as the namespace's asset
(services/assets/manifest.py: the digest covers the namespace's name), asks
`POST .../assets/missing` which digests the blob store lacks, uploads those with
`PUT .../assets/<digest>` and names them all in the deploy request, which builds the
version's manifest (`build_assets`). A deployer of the namespace only: an upload is
stored as this namespace's asset, whatever digest the caller claims.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request

from eventlog.errors import InvalidEvent
from eventlog.events.assets import MAX_ASSET_BYTES, AssetsConfig, VersionAssets, check_config
from services.api.auth import Auth
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.models import AssetDigests, AssetsIn
from services.api.routes.common import WRITE_ERRORS, Ctx, Namespace, namespace_doc
from services.assets import (
    AssetError,
    AssetFile,
    check_files,
    owner_digest,
    owner_marker,
    parse_headers,
    parse_redirects,
    render_manifest,
    scoped_bytes,
    scoped_digest,
)
from services.blobstore import BlobStoreError

router = APIRouter(prefix="/v1/namespaces/{ns}/assets", tags=["assets"])
Digest = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$", description="scoped sha256")]
_PARALLEL = 32


def _refusal(exc: AssetError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message, field=exc.field)


@router.post("/missing", responses=WRITE_ERRORS)
async def missing(ns: Namespace, body: AssetDigests, ctx: Ctx,
                  principal: Auth) -> dict[str, Any]:
    """The digests of `digests` this namespace still has to upload."""
    await namespace_doc(ctx, principal, ns, write=True)
    wanted = list(dict.fromkeys(body.digests))
    for d in wanted:
        if len(d) != 64 or any(c not in "0123456789abcdef" for c in d):
            raise ApiError(400, "invalid_digest", f"{d!r} is not a lowercase hex sha256",
                           field="digests")
    gate = asyncio.Semaphore(_PARALLEL)

    async def absent(digest: str) -> bool:
        # Present only as this namespace's upload: another namespace's file is "missing"
        # here (no oracle of what others uploaded).
        async with gate:
            return not (await ctx.blobs.exists(owner_digest(ns, digest))
                        and await ctx.blobs.exists(digest))

    flags = await asyncio.gather(*(absent(d) for d in wanted))
    return {"missing": [d for d, gone in zip(wanted, flags, strict=True) if gone],
            "checked": len(wanted)}


@router.put("/{digest}", status_code=201, responses=WRITE_ERRORS)
async def upload(ns: Namespace, digest: Digest, request: Request, ctx: Ctx,
                 principal: Auth) -> dict[str, Any]:
    """One asset file's bytes (at most 25 MiB), stored as this namespace's asset."""
    await namespace_doc(ctx, principal, ns, write=True)
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_ASSET_BYTES:
            raise ApiError(413, "asset_too_large", f"an asset has at most {MAX_ASSET_BYTES:,} "
                           "bytes (25 MiB, Cloudflare's limit)")
        parts.append(chunk)
    content = b"".join(parts)
    actual = scoped_digest(ns, content)
    if actual != digest:
        raise ApiError(400, "digest_mismatch", f"the bytes hash to {actual} as an asset of "
                       f"namespace {ns}, not {digest}")
    try:
        await ctx.blobs.put(scoped_bytes(ns, content), expected_sha256=digest)
        await ctx.blobs.put(owner_marker(ns, digest))  # after the bytes: a marker vouches
    except BlobStoreError as exc:
        raise ApiError(503, "blobstore_unavailable", f"the blob store failed: {exc}") from None
    return {"sha256": digest, "size": size}


def _config(body: AssetsIn, has_worker: bool) -> AssetsConfig:
    first = body.run_worker_first
    config = AssetsConfig(
        binding=body.binding, html_handling=body.html_handling,
        not_found_handling=body.not_found_handling,
        run_worker_first=first if isinstance(first, bool) else False,
        worker_first=tuple(first) if isinstance(first, list) else ())
    try:
        check_config(config, has_worker)
    except InvalidEvent as exc:
        raise ApiError(400, exc.code, exc.message, field=exc.field) from None
    return config


async def build_assets(ctx: ApiContext, ns: str, body: AssetsIn, *, has_worker: bool,
                       ) -> tuple[VersionAssets, bytes, list[str]]:
    """(the event's field, the manifest blob, warnings for the CLI); nothing written.
    Every file must have been uploaded (as this namespace's asset) first."""
    config = _config(body, has_worker)
    files = [AssetFile(f.path, f.sha256, f.size) for f in body.files]
    try:
        check_files(files)
        headers, warned = parse_headers(body.headers)
        redirects, more = parse_redirects(body.redirects, config.html_handling)
    except AssetError as exc:
        raise _refusal(exc) from None
    gate = asyncio.Semaphore(_PARALLEL)

    async def absent(f: AssetFile) -> bool:
        async with gate:
            return not (await ctx.blobs.exists(owner_digest(ns, f.sha256))
                        and await ctx.blobs.exists(f.sha256))

    flags = await asyncio.gather(*(absent(f) for f in files))
    lacking = [f.path for f, gone in zip(files, flags, strict=True) if gone]
    if lacking:
        raise ApiError(409, "assets_not_uploaded", f"{len(lacking)} asset file(s) were not "
                       f"uploaded first (e.g. {lacking[0]!r}): upload them with PUT "
                       f"/v1/namespaces/{ns}/assets/<digest>", field="assets.files")
    manifest = render_manifest(files, headers, redirects)
    ref = VersionAssets(manifest_sha256=hashlib.sha256(manifest).hexdigest(),
                        manifest_size=len(manifest), files=len(files), config=config)
    return ref, manifest, warned + more
