"""One error shape for every failure: ``{"error": {"code", "message", …}}``.

Messages never include request bodies (pydantic's `input` is dropped), so a
secret value sent in a malformed request cannot come back in the response.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from eventlog.errors import EventTooLarge, InvalidEvent, LogUnavailable
from services.blobstore.errors import BlobStoreError, BlobStoreUnavailable
from services.bundles import BundleError

log = logging.getLogger("wdl.api")


class ApiError(Exception):
    """A failure with an HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, **self.extra)


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def not_found(what: str, name: str) -> ApiError:
    return ApiError(404, f"{what}_not_found", f"{what} {name!r} not found")


def _respond(status: int, body: dict[str, Any],
             headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def _field(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or "body"


def install_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return _respond(exc.status, exc.body(), headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {}
        details = [{"field": _field(e.get("loc", ())), "message": str(e.get("msg", ""))}
                   for e in errors[:20]]
        return _respond(422, error_body(
            "validation_failed",
            f"{_field(first.get('loc', ()))}: {first.get('msg', 'invalid request')}",
            field=_field(first.get("loc", ())), details=details))

    @app.exception_handler(InvalidEvent)
    async def _invalid(_: Request, exc: InvalidEvent) -> JSONResponse:
        return _respond(400, error_body(exc.code, exc.message, field=exc.field))

    @app.exception_handler(BundleError)
    async def _bundle(_: Request, exc: BundleError) -> JSONResponse:
        status = 413 if exc.too_large else 400
        code = "bundle_too_large" if exc.too_large else exc.code
        return _respond(status, error_body(code, str(exc), field=exc.field))

    @app.exception_handler(EventTooLarge)
    async def _too_large(_: Request, exc: EventTooLarge) -> JSONResponse:
        return _respond(413, error_body(exc.code, exc.message, limit=exc.limit))

    @app.exception_handler(LogUnavailable)
    async def _unavailable(_: Request, exc: LogUnavailable) -> JSONResponse:
        log.warning("event log unavailable: %s", exc.message)
        return _respond(503, error_body(exc.code, "the event log is unavailable; retry",
                                        outcome_unknown=exc.outcome_unknown),
                        {"Retry-After": "1"})

    @app.exception_handler(BlobStoreError)
    async def _blobs(_: Request, exc: BlobStoreError) -> JSONResponse:
        if isinstance(exc, BlobStoreUnavailable):
            log.warning("blob store unavailable: %s", exc.message)
            return _respond(503, error_body(exc.code, "the blob store is unavailable; retry"),
                            {"Retry-After": "1"})
        log.error("blob store error: %s", exc.code)
        return _respond(500, error_body(exc.code, "blob store error"))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return _respond(exc.status_code, error_body(code, str(exc.detail)),
                        dict(exc.headers) if exc.headers else None)
