"""Starlette routes the gateway's WdlR2 entrypoint calls (mounted at /r2 by the data service).

Wire protocol (every path is `/<namespace>/<bucket>/<op>`, names URL-encoded;
the namespace and bucket come from the binding's platform-set props):

- JSON ops, `POST` with a JSON body: `head`, `get`, `delete`, `list`,
  `mpu/create`, `mpu/complete`, `mpu/abort`;
- streamed uploads, `PUT` with the raw body and the request JSON in header
  `x-wdl-r2-request` (base64url): `put`, `mpu/part`;
- `get` answers the raw bytes with the object JSON in header `x-wdl-r2-object`.

Errors are `{"error": {"code", "name", "message"}}` with R2's numeric code and
HTTP status; a bucket missing from the projection is 404 `r2_bucket_not_found`.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from services import tenant_json
from services.r2.errors import InvalidArgument, PreconditionFailed, R2Error
from services.r2.model import (
    HTTP_FIELDS,
    Conditional,
    ListOptions,
    ObjectMeta,
    RangeSpec,
    Where,
)
from services.r2.port import R2Store

Exists = Callable[[str, str], Awaitable[bool]]
REQUEST_HEADER = "x-wdl-r2-request"
OBJECT_HEADER = "x-wdl-r2-object"
MAX_DELETE_KEYS = 1000
_INCLUDE = frozenset({"httpMetadata", "customMetadata"})
_HASH_FIELDS = ("md5", "sha1", "sha256", "sha384", "sha512")


def encode_header(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


# Requests carry flat maps (custom and HTTP metadata, conditions, checksums): a few
# levels. Deeper is refused before `_well_formed` walks it (it recurses).
MAX_REQUEST_DEPTH = 16


def decode_header(text: str) -> Any:
    return tenant_json.loads(base64.urlsafe_b64decode(text.encode() + b"=" * (-len(text) % 4)),
                             MAX_REQUEST_DEPTH)


def r2_routes(store: R2Store, exists: Exists) -> list[BaseRoute]:
    """Routes for `Mount("/r2", routes=r2_routes(store, exists))`."""
    ops = _Ops(store)
    table: dict[str, Callable[[Where, Request], Awaitable[Response]]] = {
        "head": ops.head, "get": ops.get, "put": ops.put, "delete": ops.delete,
        "list": ops.list, "mpu/create": ops.mpu_create, "mpu/part": ops.mpu_part,
        "mpu/complete": ops.mpu_complete, "mpu/abort": ops.mpu_abort,
    }

    def endpoint(op: str) -> Callable[[Request], Awaitable[Response]]:
        handler = table[op]

        async def run(request: Request) -> Response:
            ns, bucket = request.path_params["ns"], request.path_params["bucket"]
            if not await exists(ns, bucket):
                return JSONResponse({"error": {
                    "code": "r2_bucket_not_found", "name": "NoSuchBucket",
                    "message": "The specified bucket does not exist."}}, status_code=404)
            try:
                return await handler(Where(ns, bucket), request)
            except PreconditionFailed as exc:
                body = _error_body(exc)
                if exc.meta is not None:
                    body["object"] = _object_json(exc.meta)
                return JSONResponse(body, status_code=exc.status)
            except R2Error as exc:
                return JSONResponse(_error_body(exc), status_code=exc.status)

        return run

    streamed = {"put", "mpu/part"}
    return [
        Route(f"/{{ns}}/{{bucket}}/{op}", endpoint(op),
              methods=["PUT" if op in streamed else "POST"])
        for op in table
    ]


class _Ops:
    def __init__(self, store: R2Store) -> None:
        self.store = store

    async def head(self, where: Where, request: Request) -> Response:
        req = await _json(request)
        meta = await self.store.head(where, _str(req, "key"))
        if meta is None:
            return JSONResponse({"object": None})
        return JSONResponse({"object": _object_json(meta)})

    async def get(self, where: Where, request: Request) -> Response:
        req = await _json(request)
        rng = RangeSpec.from_json(_opt_map(req, "range"), _opt_str(req, "rangeHeader"))
        body = await self.store.get(where, _str(req, "key"), range_=rng,
                                    only_if=_conditional(req))
        obj = _object_json(body.meta)
        obj["range"] = {"offset": body.offset, "length": body.length}
        return StreamingResponse(body.chunks, headers={
            OBJECT_HEADER: encode_header(obj), "content-length": str(body.length),
            "content-type": "application/octet-stream"})

    async def put(self, where: Where, request: Request) -> Response:
        req = _header_json(request)
        expected = {}
        for name in _HASH_FIELDS:
            value = req.get(name)
            if value is not None:
                expected[name] = _hex(value)
        meta = await self.store.put(
            where, _str(req, "key"), _body(request), http_metadata=_http(req),
            custom_metadata=_custom(req), expected=expected, only_if=_conditional(req))
        return JSONResponse({"object": _object_json(meta)})

    async def delete(self, where: Where, request: Request) -> Response:
        req = await _json(request)
        keys = req.get("keys")
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise InvalidArgument()
        if len(keys) > MAX_DELETE_KEYS:
            raise InvalidArgument(f"Too many keys; the maximum is {MAX_DELETE_KEYS}.")
        await self.store.delete(where, keys)
        return JSONResponse({})

    async def list(self, where: Where, request: Request) -> Response:
        req = await _json(request)
        start_after = _opt_str(req, "startAfter")
        cursor = _opt_str(req, "cursor")
        if cursor:
            try:
                after = base64.b64decode(cursor.encode(), validate=True).decode()
            except ValueError:
                raise InvalidArgument("The cursor is not valid.") from None
            if start_after is None or after > start_after:
                start_after = after
        include = req.get("include") or []
        if not isinstance(include, list) or not set(include) <= _INCLUDE:
            raise InvalidArgument()
        limit = req.get("limit")
        page = await self.store.list_objects(where, ListOptions(
            prefix=_opt_str(req, "prefix") or "", delimiter=_opt_str(req, "delimiter"),
            start_after=start_after, limit=1000 if limit is None else _int(limit),
            include=frozenset(include)))
        out: dict[str, Any] = {
            "objects": [_object_json(o) for o in page.objects],
            "delimitedPrefixes": page.delimited_prefixes,
            "truncated": page.next_start_after is not None,
        }
        if page.next_start_after is not None:
            out["cursor"] = base64.b64encode(page.next_start_after.encode()).decode()
        return JSONResponse(out)

    async def mpu_create(self, where: Where, request: Request) -> Response:
        req = await _json(request)
        upload_id = await self.store.create_multipart(
            where, _str(req, "key"), http_metadata=_http(req), custom_metadata=_custom(req))
        return JSONResponse({"uploadId": upload_id})

    async def mpu_part(self, where: Where, request: Request) -> Response:
        req = _header_json(request)
        number = _int(req.get("partNumber"))
        etag = await self.store.upload_part(where, _str(req, "key"), _str(req, "uploadId"),
                                            number, _body(request))
        return JSONResponse({"partNumber": number, "etag": etag})

    async def mpu_complete(self, where: Where, request: Request) -> Response:
        req = await _json(request)
        raw = req.get("parts")
        if not isinstance(raw, list):
            raise InvalidArgument()
        parts = [(_int(p.get("partNumber")), _str(p, "etag")) for p in raw
                 if isinstance(p, dict)]
        meta = await self.store.complete_multipart(where, _str(req, "key"),
                                                   _str(req, "uploadId"), parts)
        return JSONResponse({"object": _object_json(meta)})

    async def mpu_abort(self, where: Where, request: Request) -> Response:
        req = await _json(request)
        await self.store.abort_multipart(where, _str(req, "key"), _str(req, "uploadId"))
        return JSONResponse({})


def _error_body(exc: R2Error) -> dict[str, Any]:
    return {"error": {"code": exc.code, "name": type(exc).__name__, "message": exc.message}}


def _object_json(meta: ObjectMeta) -> dict[str, Any]:
    return meta.to_json()


async def _body(request: Request) -> AsyncIterator[bytes]:
    async for chunk in request.stream():
        if chunk:
            yield chunk


# A lone surrogate: JSON (and so a JS string) may hold one, UTF-8 cannot.
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _well_formed(value: Any) -> Any:
    """Every string of a request as UTF-8 can hold it: a lone surrogate becomes U+FFFD,
    as workerd makes every JS string UTF-8 for Cloudflare's R2. Kept as it was, it was
    stored, then no answer naming it could be encoded: the put and every later listing
    of the bucket failed (tests/security/test_redteam_tenant_data.py)."""
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_well_formed(k): _well_formed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_well_formed(v) for v in value]
    return value


async def _json(request: Request) -> Mapping[str, Any]:
    try:
        value = tenant_json.loads(await request.body(), MAX_REQUEST_DEPTH)
    except ValueError:
        raise InvalidArgument() from None
    if not isinstance(value, dict):
        raise InvalidArgument()
    return _well_formed(value)  # type: ignore[no-any-return]


def _header_json(request: Request) -> Mapping[str, Any]:
    raw = request.headers.get(REQUEST_HEADER)
    if raw is None:
        raise InvalidArgument()
    try:
        value = decode_header(raw)
    except ValueError:
        raise InvalidArgument() from None
    if not isinstance(value, dict):
        raise InvalidArgument()
    return _well_formed(value)  # type: ignore[no-any-return]


def _str(req: Mapping[str, Any], name: str) -> str:
    value = req.get(name)
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


def _opt_str(req: Mapping[str, Any], name: str) -> str | None:
    value = req.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidArgument(f"{name} must be a string")
    return value


def _opt_map(req: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    value = req.get(name)
    if value is not None and not isinstance(value, dict):
        raise InvalidArgument(f"{name} must be an object")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise InvalidArgument()
    return int(value)


def _hex(value: Any) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError:
        raise InvalidArgument() from None


def _http(req: Mapping[str, Any]) -> dict[str, Any]:
    raw = _opt_map(req, "httpMetadata") or {}
    out: dict[str, Any] = {}
    for name in HTTP_FIELDS:
        if raw.get(name) is not None:
            out[name] = str(raw[name])
    if raw.get("cacheExpiry") is not None:
        out["cacheExpiry"] = _int(raw["cacheExpiry"])
    return out


def _custom(req: Mapping[str, Any]) -> dict[str, str]:
    raw = _opt_map(req, "customMetadata") or {}
    return {str(k): str(v) for k, v in raw.items()}


def _conditional(req: Mapping[str, Any]) -> Conditional | None:
    try:
        return Conditional.from_json(_opt_map(req, "onlyIf"))
    except (KeyError, TypeError, ValueError):
        raise InvalidArgument() from None
