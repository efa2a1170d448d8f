"""The data service's HTTP app: one mount per binding kind, behind the internal token.

Only the gateway calls it (over loopback, from the binding entrypoints), and
it trusts the (namespace, resource) in each path because the gateway took them
from props that only the platform sets. The token keeps anything else on the
machine from calling it with made-up ones; `/healthz` and `/metrics` too (health
checks and scrapers send it as `Authorization: Bearer`).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.types import ASGIApp

from services.data.binding_metrics import BindingMetrics
from services.data.metrics import DataMetrics
from services.internal import InternalTokenGuard


async def _healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


def create_data_app(mounts: dict[str, list[BaseRoute]], *, internal_token: str,
                    metrics: DataMetrics | None = None,
                    extra: list[BaseRoute] | None = None) -> ASGIApp:
    """`mounts`: binding kind -> its routes (under `/<kind>`); `extra`: more top-level
    routes (the tail endpoints)."""
    m = metrics or DataMetrics()

    async def egress_refused(request: Request) -> Response:
        body: dict[str, Any] = await request.json()
        if body.get("kind") == "connect":  # workerd/gateway/sockets.js
            m.socket_refused(body.get("namespace"), body.get("policy"), body.get("reason"))
        else:
            m.egress_refused(body.get("namespace"))
        return Response(status_code=204)

    async def metrics_text(request: Request) -> Response:
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    routes: list[BaseRoute] = [Route("/healthz", _healthz),
                               Route("/metrics", metrics_text),
                               Route("/egress/refused", egress_refused, methods=["POST"]),
                               *(extra or [])]
    routes += [Mount(f"/{kind}", routes=r) for kind, r in mounts.items()]
    return InternalTokenGuard(BindingMetrics(Starlette(routes=routes), m), internal_token)
