"""The D1 service's internal HTTP API (every route behind the internal token).

- `POST /d1/{ns}/{db}/query|execute?resultsFormat=` Miniflare's D1 wire format: a body
  `{sql, params}` or a list of them (all in one transaction); the answer is one result
  or a list, `{success, results, meta}` or `{success: false, error}`.
- `POST /d1/{ns}/{db}/dump` -> `{"sql": [statements]}` (export)
- `POST /d1/{ns}/{db}/backup` -> the SQLite file (online backup API)
- `POST /d1/{ns}/{db}/restore` (body: a SQLite file) -> 204
- `GET /status` -> this replica's holder id and the databases it owns
- `GET /healthz` -> `{ok, holder}`

A replica that does not own the database forwards the request to the one that
does (owner.py); 503 `d1_unavailable` means none can serve it now (retry).
"""

from __future__ import annotations

import logging
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from services import tenant_json
from services.d1.engine import D1Failure, Database, Fenced
from services.d1.owner import DIRECT_HEADER, Forward, NotFound, Owner, Unavailable
from services.internal import InternalTokenGuard

log = logging.getLogger("wdl.d1")
MAX_BODY = 64 * 1024 * 1024
HOT_OPS = frozenset({"query", "execute"})
DIRECT_HEADER_BYTES = DIRECT_HEADER.encode()


def _failure(message: str, status: int = 200, code: str = "") -> JSONResponse:
    body: dict[str, Any] = {"success": False, "error": message}
    if code:
        body["code"] = code
    return JSONResponse(body, status)


def create_d1_app(owner: Owner, *, internal_token: str) -> Any:
    async def call(request: Request, op: str) -> Response:
        raw = await request.body()
        return await serve(request.path_params["ns"], request.path_params["db"], op,
                           request.headers.get(DIRECT_HEADER) == "1", raw,
                           dict(request.query_params), request.url.path)

    async def serve(ns: str, db: str, op: str, direct: bool, raw: bytes,
                    params: dict[str, str], path: str) -> Response:
        if len(raw) > MAX_BODY:
            return _failure("request too large", 413)
        try:
            work = _work(op, raw, params.get("resultsFormat", ""))
        except D1Failure as exc:
            return _failure(str(exc))
        try:
            result = await owner.run(ns, db, direct, work)
        except NotFound as exc:
            return _failure(str(exc), 404, "d1_database_not_found")
        except Unavailable as exc:
            return _failure(f"{exc}; retry", 503, "d1_unavailable")
        except Fenced as exc:
            return _failure(f"D1 database owner changed ({exc}); retry", 503, "d1_owner_fenced")
        except D1Failure as exc:
            return _failure(str(exc))
        except (sqlite3.Error, OSError) as exc:
            # Opening or claiming the file failed: SQLite's and the OS's texts may name
            # host paths, so they go to the operator's log only.
            log.exception("D1 %s/%s: %s failed", ns, db, op)
            return _failure(f"D1 DB storage failed ({type(exc).__name__}); retry", 503,
                            "d1_storage_error")
        if isinstance(result, Forward):
            try:
                answer = await owner.forward(result, path, raw, params)
            except Unavailable as exc:
                return _failure(f"{exc}; retry", 503, "d1_unavailable")
            return Response(answer.content, answer.status_code,
                            media_type=answer.headers.get("content-type"))
        if isinstance(result, bytes):
            return Response(result, media_type="application/octet-stream")
        if result is None:
            return Response(status_code=204)
        return Response(msgspec.json.encode(result), media_type="application/json")

    def route(op: str) -> Route:
        async def handler(request: Request) -> Response:
            return await call(request, op)
        return Route(f"/d1/{{ns}}/{{db}}/{op}", handler, methods=["POST"], name=op)

    async def status(request: Request) -> Response:
        return JSONResponse(owner.status())

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "holder": owner.holder})

    app = Starlette(routes=[Route("/healthz", healthz), Route("/status", status),
                            *(route(op) for op in ("query", "execute", "dump", "backup",
                                                   "restore"))])

    return InternalTokenGuard(_HotPath(app, serve), internal_token)


class _HotPath:
    """`query`/`execute` (every tenant statement) without Starlette's routing and
    request objects: the same handling as the routes, less work per request.
    Everything else goes to `app`."""

    def __init__(self, app: Starlette, serve: Callable[..., Awaitable[Response]]) -> None:
        self.app = app
        self.serve = serve

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        parts = scope["path"].split("/") if scope["type"] == "http" else []
        if len(parts) != 5 or parts[1] != "d1" or parts[4] not in HOT_OPS \
                or not parts[2] or not parts[3] or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        direct = False
        for name, value in scope["headers"]:
            if name == DIRECT_HEADER_BYTES:
                direct = value == b"1"
        params = dict(parse_qsl(scope["query_string"].decode("latin-1"),
                                keep_blank_values=True))
        path = scope.get("raw_path", b"").decode("latin-1") or quote(scope["path"])
        response = await self.serve(parts[2], parts[3], parts[4], direct, b"".join(chunks),
                                    params, path)
        await response(scope, receive, send)


def _work(op: str, raw: bytes, fmt: str) -> Any:
    """What runs on the owner's worker thread for one request (parsed here, once)."""
    if op in ("query", "execute"):
        try:
            body = tenant_json.decode(raw)
        except msgspec.DecodeError:
            raise D1Failure("request body is not JSON (or nested too deeply)") from None
        single = isinstance(body, dict)
        queries = [body] if single else body
        if not isinstance(queries, list) or not all(
                isinstance(q, dict) and isinstance(q.get("sql"), str) for q in queries):
            raise D1Failure("expected {sql, params} or a list of them")
        fmt = fmt if fmt in ("ROWS_AND_COLUMNS", "NONE") else "ARRAY_OF_OBJECTS"

        def run(database: Database, generation: int) -> Any:
            results = database.query(generation, queries, fmt)
            return results[0] if single else results
        return run
    if op == "dump":
        return lambda database, generation: {"sql": database.dump(generation)}
    if op == "backup":
        def backup(database: Database, generation: int) -> bytes:
            with tempfile.TemporaryDirectory(prefix="wdl-d1-") as tmp:
                target = Path(tmp) / "backup.sqlite"
                database.backup_to(generation, target)
                return target.read_bytes()
        return backup
    if op == "restore":
        if not raw.startswith(b"SQLite format 3\x00"):
            raise D1Failure("the backup is not a SQLite database")

        def restore(database: Database, generation: int) -> None:
            with tempfile.TemporaryDirectory(prefix="wdl-d1-") as tmp:
                source = Path(tmp) / "restore.sqlite"
                source.write_bytes(raw)
                database.restore_from(generation, source)
        return restore
    raise D1Failure(f"unknown operation {op}")
