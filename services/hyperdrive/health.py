"""The Hyperdrive component's `/healthz` and `/metrics` (the platform serves them behind
the internal token: services/platform.py, docs/operations.md "Hyperdrive pooler").

`/healthz` is 200 when PgBouncer runs and accepts connections, else 503; it says how many
configs are served and left out, never which (a config id names a tenant's database).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

if TYPE_CHECKING:
    from services.hyperdrive.service import HyperdriveService


def health_app(service: HyperdriveService) -> Starlette:
    async def health(request: Request) -> JSONResponse:
        alive = service.alive
        listening = alive and await service.listening()
        ok = alive and listening
        return JSONResponse({
            "ok": ok, "pooler": {"alive": alive, "listening": listening,
                                 "address": service.address},
            "configs": service.served, "unopened": len(service.skipped),
            "reloads": service.reloads, "restarts": service.restarts,
            "console": not service.console_failing},
            status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(service.metrics.registry),
                        media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/healthz", health), Route("/metrics", metrics)])
