"""R2 object data for the CLI (`wdl r2 object ...`): list, get, head, put, delete.

Bodies stream both ways (request.stream() into the store, the store's chunks
out), so an object is never held in the API process. Reads need a token that
can read the namespace, writes one that can deploy to it (deployer/admin);
a bucket missing from the projection is 404 `r2_bucket_not_found`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from email.utils import formatdate
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response, StreamingResponse

from services import tenant_json
from services.api.auth import Auth, Principal
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.routes.common import READ_ERRORS, WRITE_ERRORS, Ctx, Namespace, namespace_doc
from services.r2.errors import R2Error, R2StoreError
from services.r2.model import ListOptions, ObjectMeta, Where
from services.r2.port import R2Store
from services.r2.routes import OBJECT_HEADER, encode_header

router = APIRouter(prefix="/v1/namespaces/{ns}/r2/{bucket}", tags=["r2"])
Bucket = Annotated[str, Path(min_length=1, max_length=64, description="R2 bucket name")]
Key = Annotated[str, Path(min_length=1, description="object key")]
CUSTOM_HEADER = "x-wdl-r2-custom-metadata"  # JSON object of custom metadata on PUT


async def _bucket(ctx: ApiContext, principal: Principal, ns: str, bucket: str, *,
                  write: bool) -> tuple[R2Store, Where]:
    await namespace_doc(ctx, principal, ns, write=write)
    if await ctx.reader.resource("r2", ns, bucket) is None:
        raise ApiError(404, "r2_bucket_not_found",
                       f"R2 bucket {bucket!r} does not exist in namespace {ns}")
    store: R2Store | None = ctx.r2
    if store is None:
        raise ApiError(503, "r2_unavailable", "this API process has no R2 store configured")
    return store, Where(ns, bucket)


def _r2_failure(exc: Exception) -> ApiError:
    if isinstance(exc, R2Error):
        code = "r2_" + re.sub(r"(?<!^)(?=[A-Z])", "_", type(exc).__name__).lower()
        return ApiError(exc.status, code, exc.message)
    return ApiError(503, "r2_unavailable", str(exc))


def _view(meta: ObjectMeta) -> dict[str, Any]:
    return meta.to_json()


def _headers(meta: ObjectMeta, length: int) -> dict[str, str]:
    headers = {
        "etag": f'"{meta.etag}"',
        "last-modified": formatdate(meta.uploaded / 1000, usegmt=True),
        "content-length": str(length),
        OBJECT_HEADER: encode_header(_view(meta)),
    }
    for field, header in (("contentType", "content-type"),
                          ("contentLanguage", "content-language"),
                          ("contentDisposition", "content-disposition"),
                          ("contentEncoding", "content-encoding"),
                          ("cacheControl", "cache-control")):
        if meta.http_metadata.get(field) is not None:
            headers[header] = str(meta.http_metadata[field])
    headers.setdefault("content-type", "application/octet-stream")
    return headers


@router.get("/objects", responses=READ_ERRORS)
async def list_objects(ns: Namespace, bucket: Bucket, ctx: Ctx, principal: Auth,
                       prefix: str = "", delimiter: str | None = None,
                       cursor: str | None = None,
                       limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> dict[str, Any]:
    """One page of objects (R2 order); pass the answer's `cursor` for the next page."""
    store, where = await _bucket(ctx, principal, ns, bucket, write=False)
    try:
        page = await store.list_objects(where, ListOptions(
            prefix=prefix, delimiter=delimiter or None, start_after=cursor or None,
            limit=limit, include=frozenset({"httpMetadata", "customMetadata"})
            if limit <= 100 else frozenset()))
    except (R2Error, R2StoreError) as exc:
        raise _r2_failure(exc) from None
    return {
        "objects": [_view(o) for o in page.objects],
        "delimitedPrefixes": page.delimited_prefixes,
        "truncated": page.next_start_after is not None,
        "cursor": page.next_start_after,
    }


@router.head("/objects/{key:path}", responses=READ_ERRORS)
async def head_object(ns: Namespace, bucket: Bucket, key: Key, ctx: Ctx,
                      principal: Auth) -> Response:
    store, where = await _bucket(ctx, principal, ns, bucket, write=False)
    try:
        meta = await store.head(where, key)
    except (R2Error, R2StoreError) as exc:
        raise _r2_failure(exc) from None
    if meta is None:
        raise ApiError(404, "r2_object_not_found", f"object {key!r} not found")
    return Response(status_code=200, headers=_headers(meta, meta.size))


@router.get("/objects/{key:path}", responses=READ_ERRORS)
async def get_object(ns: Namespace, bucket: Bucket, key: Key, ctx: Ctx,
                     principal: Auth) -> Response:
    store, where = await _bucket(ctx, principal, ns, bucket, write=False)
    try:
        got = await store.get(where, key)
    except R2Error as exc:
        if exc.code == 10007:
            raise ApiError(404, "r2_object_not_found", f"object {key!r} not found") from None
        raise _r2_failure(exc) from None
    except R2StoreError as exc:
        raise _r2_failure(exc) from None
    return StreamingResponse(got.chunks, headers=_headers(got.meta, got.length))


@router.put("/objects/{key:path}", responses=WRITE_ERRORS)
async def put_object(ns: Namespace, bucket: Bucket, key: Key, request: Request, ctx: Ctx,
                     principal: Auth) -> dict[str, Any]:
    """Store the raw request body under `key` (Content-Type kept as httpMetadata)."""
    store, where = await _bucket(ctx, principal, ns, bucket, write=True)
    http: dict[str, Any] = {}
    if request.headers.get("content-type"):
        http["contentType"] = request.headers["content-type"]
    custom: dict[str, str] = {}
    raw = request.headers.get(CUSTOM_HEADER)
    if raw:
        try:
            parsed = tenant_json.loads(raw)
        except ValueError:
            parsed = None
        if not isinstance(parsed, dict):
            raise ApiError(400, "invalid_custom_metadata",
                           f"{CUSTOM_HEADER} must be a JSON object of strings")
        custom = {str(k): str(v) for k, v in parsed.items()}

    async def body() -> AsyncIterator[bytes]:
        async for chunk in request.stream():
            if chunk:
                yield chunk

    try:
        meta = await store.put(where, key, body(), http_metadata=http, custom_metadata=custom)
    except (R2Error, R2StoreError) as exc:
        raise _r2_failure(exc) from None
    return _view(meta)


@router.delete("/objects/{key:path}", responses=WRITE_ERRORS)
async def delete_object(ns: Namespace, bucket: Bucket, key: Key, ctx: Ctx,
                        principal: Auth) -> dict[str, Any]:
    store, where = await _bucket(ctx, principal, ns, bucket, write=True)
    try:
        await store.delete(where, [key])
    except (R2Error, R2StoreError) as exc:
        raise _r2_failure(exc) from None
    return {"deleted": key}
