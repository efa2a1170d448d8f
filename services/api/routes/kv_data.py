"""KV values for the CLI (`wdl kv key ...`): list keys, get, put, delete.

The same limits as the tenant binding (services/kv/limits.py, Miniflare's
rules and messages). Reads need a token that can read the namespace, writes one
that can deploy to it (deployer/admin); a KV namespace missing from the
projection is 404 `kv_namespace_not_found`.

- `GET    …/kv/{name}/keys?prefix=&limit=&cursor=` → the Workers list result
- `GET    …/kv/{name}/values/{key}` → the raw value; `x-kv-metadata` (percent-encoded
  JSON text) and `x-kv-expiration` headers when set; 404 `kv_key_not_found`
- `PUT    …/kv/{name}/values/{key}?expiration_ttl=|expiration=` raw body; metadata as
  the `x-kv-metadata` header (JSON text, percent-encoded) or `?metadata=` (JSON text)
- `DELETE …/kv/{name}/values/{key}`
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from services.api.auth import Auth, Principal
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.routes.common import READ_ERRORS, WRITE_ERRORS, Ctx, Namespace, namespace_doc
from services.kv import limits
from services.kv.limits import KvRefusal
from services.kv.port import InvalidCursor, KvStore, now_s
from services.kv.routes import EXPIRATION_HEADER, METADATA_HEADER

router = APIRouter(prefix="/v1/namespaces/{ns}/kv/{name}", tags=["kv"])
KvName = Annotated[str, Path(min_length=1, max_length=64, description="KV namespace id")]
Key = Annotated[str, Path(description="key name (percent-encode '/' and other reserved "
                                      "characters)")]


async def _kv(ctx: ApiContext, principal: Principal, ns: str, name: str, *,
              write: bool) -> KvStore:
    await namespace_doc(ctx, principal, ns, write=write)
    if await ctx.reader.resource("kv", ns, name) is None:
        raise ApiError(404, "kv_namespace_not_found",
                       f"KV namespace {name!r} does not exist in namespace {ns}")
    store: KvStore | None = ctx.kv
    if store is None:
        raise ApiError(503, "kv_unavailable", "this API process has no KV store configured")
    return store


def _refused(exc: KvRefusal) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


@router.get("/keys", responses=READ_ERRORS)
async def list_keys(ns: Namespace, name: KvName, ctx: Ctx, principal: Auth,
                    prefix: str = "", cursor: str | None = None,
                    limit: Annotated[int, Query(ge=1, le=1000)] = 1000) -> dict[str, Any]:
    """Keys in UTF-8 byte order; `cursor` is present when more follow."""
    store = await _kv(ctx, principal, ns, name, write=False)
    try:
        limits.check_key_length(prefix)
        page = await store.list(ns, name, prefix=prefix, limit=limit, cursor=cursor or None)
    except KvRefusal as exc:
        raise _refused(exc) from exc
    except InvalidCursor as exc:
        raise ApiError(400, "kv_invalid_cursor", str(exc)) from exc
    keys: list[dict[str, Any]] = []
    for k in page.keys:
        item: dict[str, Any] = {"name": k.name}
        if k.expiration is not None:
            item["expiration"] = k.expiration
        if k.metadata is not None:
            item["metadata"] = json.loads(k.metadata)
        keys.append(item)
    out: dict[str, Any] = {"keys": keys, "list_complete": page.list_complete}
    if page.cursor is not None:
        out["cursor"] = page.cursor
    return out


@router.get("/values/{key:path}", responses=READ_ERRORS,
            response_class=Response)
async def get_value(ns: Namespace, name: KvName, key: Key, ctx: Ctx,
                    principal: Auth) -> Response:
    store = await _kv(ctx, principal, ns, name, write=False)
    try:
        entry = await store.get(ns, name, limits.check_key(key))
    except KvRefusal as exc:
        raise _refused(exc) from exc
    if entry is None:
        raise ApiError(404, "kv_key_not_found", f"key {key!r} not found")
    headers: dict[str, str] = {}
    if entry.metadata is not None:
        headers[METADATA_HEADER] = quote(entry.metadata, safe="")
    if entry.expiration is not None:
        headers[EXPIRATION_HEADER] = str(entry.expiration)
    return Response(entry.value, media_type="application/octet-stream", headers=headers)


@router.put("/values/{key:path}", status_code=204, responses=WRITE_ERRORS,
            response_class=Response)
async def put_value(ns: Namespace, name: KvName, key: Key, request: Request, ctx: Ctx,
                    principal: Auth, expiration_ttl: str | None = None,
                    expiration: str | None = None, metadata: str | None = None) -> Response:
    """Replace the value (and its metadata and expiration) of a key."""
    store = await _kv(ctx, principal, ns, name, write=True)
    header = request.headers.get(METADATA_HEADER)
    raw_meta = unquote(header) if header is not None else metadata
    try:
        limits.check_key(key)
        exp = limits.expiration_from(expiration, expiration_ttl, now_s())
        meta = None if raw_meta is None else limits.check_metadata(raw_meta)
        value = await _body(request)
    except KvRefusal as exc:
        raise _refused(exc) from exc
    await store.put(ns, name, key, value, expiration=exp, metadata=meta)
    return Response(status_code=204)


@router.delete("/values/{key:path}", status_code=204, responses=WRITE_ERRORS,
               response_class=Response)
async def delete_value(ns: Namespace, name: KvName, key: Key, ctx: Ctx,
                       principal: Auth) -> Response:
    store = await _kv(ctx, principal, ns, name, write=True)
    try:
        await store.delete(ns, name, limits.check_key(key))
    except KvRefusal as exc:
        raise _refused(exc) from exc
    return Response(status_code=204)


async def _body(request: Request) -> bytes:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limits.MAX_VALUE_BYTES:
            raise limits.value_too_large(size)
        chunks.append(chunk)
    return b"".join(chunks)
