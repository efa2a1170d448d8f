"""The data service's HTTP app: one mount per binding kind, behind the internal token.

Only the gateway calls it (over loopback, from the binding entrypoints), and
it trusts the (namespace, resource) in each path because the gateway took them
from props that only the platform sets. The token keeps anything else on the
machine from calling it with made-up ones.
"""

from __future__ import annotations

import hmac
from typing import Any

from prometheus_client import Counter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

TOKEN_HEADER = b"x-wdl-internal-token"

EGRESS_REFUSALS = Counter(
    "wdl_egress_refusals_total", "Tenant fetches refused by the namespace egress policy",
    ["namespace"])


class InternalTokenGuard:
    """Plain ASGI (no per-request middleware objects): this sits on the KV hot path."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] != "/healthz":
            given = b""
            for name, value in scope["headers"]:
                if name == TOKEN_HEADER:
                    given = value
                    break
            if not self.token or not hmac.compare_digest(given, self.token):
                response = JSONResponse({"code": "forbidden",
                                         "message": "internal token required"}, 403)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


async def _egress_refused(request: Request) -> Response:
    body: dict[str, Any] = await request.json()
    namespace = str(body.get("namespace", ""))[:64]
    EGRESS_REFUSALS.labels(namespace=namespace).inc()
    return Response(status_code=204)


async def _healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_data_app(mounts: dict[str, list[BaseRoute]], *, internal_token: str) -> ASGIApp:
    routes: list[BaseRoute] = [Route("/healthz", _healthz),
                               Route("/egress/refused", _egress_refused, methods=["POST"])]
    routes += [Mount(f"/{kind}", routes=r) for kind, r in mounts.items()]
    return InternalTokenGuard(Starlette(routes=routes), internal_token)
