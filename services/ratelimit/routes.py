"""The data route the gateway's WdlRatelimit entrypoint calls (mounted at /ratelimit).

`POST /{ns}/{namespace_id}/limit` with JSON `{"key": sha256 hex, "limit": int,
"period": 10|60}` → `{"success": bool}`. Refusals are `{"code", "message"}` with
status 400. Behind the internal token like every data route (services/data/app.py).
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.ratelimit.store import RatelimitRefusal, RatelimitStore

MAX_BODY = 1024  # a digest and two numbers


def ratelimit_routes(store: RatelimitStore) -> list[BaseRoute]:
    async def limit(request: Request) -> Response:
        body = await request.body()
        try:
            if len(body) > MAX_BODY:
                raise RatelimitRefusal("request too large")
            try:
                doc = json.loads(body)
            except ValueError:
                raise RatelimitRefusal("body is not JSON") from None
            if not isinstance(doc, dict):
                raise RatelimitRefusal("body is not a JSON object")
            fields: dict[str, Any] = doc  # each checked by the store's allow-list
            ok = await store.hit(request.path_params["ns"], request.path_params["nsid"],
                                 fields.get("key", ""), fields.get("limit", -1),
                                 fields.get("period", 0))
        except RatelimitRefusal as exc:
            return JSONResponse({"code": "ratelimit_invalid", "message": str(exc)}, 400)
        return JSONResponse({"success": ok})

    return [Route("/{ns}/{nsid}/limit", limit, methods=["POST"])]
