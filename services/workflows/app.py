"""The engine's HTTP API (loopback, internal token): the gateway's WdlWorkflow binding
entrypoint and the control API call it. Protocol in docs/workflows.md.

`POST /rpc {op, namespace, workflow, ...}`: create, createBatch, get, status,
pause, resume, terminate, restart, sendEvent. Binding calls carry the binding's
props (namespace, workflow, worker, version, class_name) from the gateway —
set by the platform from the accepted version, never by tenant code.
`GET /v1/workflows?namespace=`, `/v1/instances?namespace=&workflow=`,
`/v1/instance?namespace=&workflow=&id=` for the control API; `/healthz`, `/metrics`.
Errors: `{error: code, message}` with an HTTP status. Every route is behind the internal
token (services/internal.py: `Authorization: Bearer` for health checks and scrapers).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.internal import InternalTokenGuard
from services.workflows import bounds
from services.workflows.engine import Engine, WorkflowError

CONTROL_OPS = frozenset({"pause", "resume", "terminate", "restart"})


def _err(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _str(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise WorkflowError(400, "invalid_request", f"`{name}` is required")
    return value


def create_app(engine_of: Callable[[], Engine | None], internal_token: str,
               health: Callable[[], dict[str, Any]],
               scrape: Callable[[], bytes] | None = None) -> InternalTokenGuard:
    def on_engine(handler: Callable[[Request, Engine], Awaitable[JSONResponse]]
                ) -> Callable[[Request], Awaitable[JSONResponse]]:
        async def endpoint(request: Request) -> JSONResponse:
            engine = engine_of()
            if engine is None:
                return _err(503, "engine_standby",
                            "this workflows engine does not hold the lease")
            try:
                return await handler(request, engine)
            except WorkflowError as exc:
                return _err(exc.status, exc.code, exc.message)
        return endpoint

    async def rpc(request: Request, engine: Engine) -> JSONResponse:
        # Params and payloads are tenant data: depth-scanned before they are parsed.
        try:
            body = bounds.loads(await request.body(), bounds.MAX_DEPTH + bounds.ENVELOPE_DEPTH)
        except bounds.TooDeep:
            raise WorkflowError(400, "invalid_request.too_deep", "params and payloads are "
                                f"nested at most {bounds.MAX_DEPTH} levels deep") from None
        except ValueError:
            raise WorkflowError(400, "invalid_request", "the body is not JSON") from None
        if not isinstance(body, dict):
            raise WorkflowError(400, "invalid_request", "the body must be an object")
        op = _str(body, "op")
        ns, wf = _str(body, "namespace"), _str(body, "workflow")
        if op in ("create", "createBatch"):
            worker, version = _str(body, "worker"), _str(body, "version")
            class_name = _str(body, "class_name")
            items = body.get("items") if op == "createBatch" else [body.get("options") or {}]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                raise WorkflowError(400, "invalid_request", "options must be objects")
            if len(items) > engine.limits.max_batch:
                raise WorkflowError(400, "batch.too_large", f"createBatch takes at most "
                                    f"{engine.limits.max_batch} instances")
            ids = [i.get("id") for i in items if i.get("id") is not None]
            if not all(isinstance(i, str) for i in ids):
                raise WorkflowError(400, "instance.invalid_id",
                                    "WorkflowError: Workflow instance has invalid id")
            if len(ids) != len(set(ids)):
                raise WorkflowError(400, "batch.duplicate_id", "createBatch: duplicate ids")
            engine.check_room(ns, len(items))
            out = []
            for item in items:
                inst = await engine.create(ns, wf, worker, version, class_name, item.get("id"),
                                           item.get("params"))
                out.append({"id": inst.id})
            return JSONResponse({"instances": out})
        iid = _str(body, "id")
        if op in ("get", "status"):
            return JSONResponse(engine.get(ns, wf, iid).status_view())
        if op in CONTROL_OPS:
            await engine.control(ns, wf, iid, op)
            return JSONResponse({"ok": True})
        if op == "sendEvent":
            await engine.send_event(ns, wf, iid, body.get("type"), body.get("payload"))
            return JSONResponse({"ok": True})
        raise WorkflowError(400, "invalid_op", f"unknown operation {op!r}")

    async def workflows(request: Request, engine: Engine) -> JSONResponse:
        ns = request.query_params.get("namespace", "")
        return JSONResponse({"workflows": engine.workflows(ns)})

    async def instances(request: Request, engine: Engine) -> JSONResponse:
        q = request.query_params
        rows = engine.instances(q.get("namespace", ""), q.get("workflow") or None)
        return JSONResponse({"instances": [i.describe() for i in rows]})

    async def instance(request: Request, engine: Engine) -> JSONResponse:
        q = request.query_params
        inst = engine.get(q.get("namespace", ""), q.get("workflow", ""), q.get("id", ""))
        return JSONResponse(inst.describe())

    async def healthz(request: Request) -> JSONResponse:
        doc = health()
        return JSONResponse(doc, status_code=200 if doc.get("ok") else 503)

    async def metrics(request: Request) -> Response:
        return Response(scrape() if scrape is not None else b"",
                        media_type=CONTENT_TYPE_LATEST)

    return InternalTokenGuard(Starlette(routes=[
        Route("/metrics", metrics),
        Route("/rpc", on_engine(rpc), methods=["POST"]),
        Route("/v1/workflows", on_engine(workflows)),
        Route("/v1/instances", on_engine(instances)),
        Route("/v1/instance", on_engine(instance)),
        Route("/healthz", healthz),
    ]), internal_token)
