"""The D1 service's internal HTTP API (behind the internal token, like the data service).

- `POST /d1/{ns}/{db}/query|execute?resultsFormat=` Miniflare's D1 wire format: a body
  `{sql, params}` or a list of them (all in one transaction); the answer is one result
  or a list, `{success, results, meta}` or `{success: false, error}`.
- `POST /d1/{ns}/{db}/dump` -> `{"sql": [statements]}` (export)
- `POST /d1/{ns}/{db}/backup` -> the SQLite file (online backup API)
- `POST /d1/{ns}/{db}/restore` (body: a SQLite file) -> 204
- `GET /status` -> this replica's holder id and the databases it owns

A replica that does not own the database forwards the request to the one that
does (owner.py); 503 `d1_unavailable` means none can serve it now (retry).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import msgspec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.d1.engine import D1Failure, Database, Fenced
from services.d1.owner import DIRECT_HEADER, Forward, NotFound, Owner, Unavailable
from services.data.app import InternalTokenGuard

MAX_BODY = 64 * 1024 * 1024


def _failure(message: str, status: int = 200, code: str = "") -> JSONResponse:
    body: dict[str, Any] = {"success": False, "error": message}
    if code:
        body["code"] = code
    return JSONResponse(body, status)


def create_d1_app(owner: Owner, *, internal_token: str) -> Any:
    async def call(request: Request, op: str) -> Response:
        ns, db = request.path_params["ns"], request.path_params["db"]
        direct = request.headers.get(DIRECT_HEADER) == "1"
        raw = await request.body()
        if len(raw) > MAX_BODY:
            return _failure("request too large", 413)
        try:
            work = _work(op, raw, request.query_params.get("resultsFormat", ""))
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
        if isinstance(result, Forward):
            try:
                answer = await owner.forward(result, request.url.path, raw,
                                             dict(request.query_params))
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
    return InternalTokenGuard(app, internal_token)


def _work(op: str, raw: bytes, fmt: str) -> Any:
    """What runs on the owner's worker thread for one request (parsed here, once)."""
    if op in ("query", "execute"):
        try:
            body = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            raise D1Failure("request body is not JSON") from None
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
