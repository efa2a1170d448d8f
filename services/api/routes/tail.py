"""`GET /v1/namespaces/{ns}/workers/{worker}/tail`: live trace events as NDJSON."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from services.api.auth import Auth
from services.api.errors import ApiError
from services.api.models import ErrorBody
from services.api.routes.common import (
    READ_ERRORS,
    Ctx,
    Namespace,
    WorkerName,
    namespace_doc,
    worker_doc,
)

router = APIRouter(prefix="/v1/namespaces/{ns}/workers", tags=["workers"])

TAIL_RESPONSES: dict[int | str, dict[str, Any]] = {
    **READ_ERRORS,
    200: {"content": {"application/x-ndjson": {}},
          "description": "one JSON object per line: `connected`, then `event` lines, "
                         "`dropped` markers, `heartbeat` every ~10 s, and `end`"},
    422: {"model": ErrorBody, "description": "a filter is out of range"},
    429: {"model": ErrorBody, "description": "too many tails open"},
    503: {"model": ErrorBody, "description": "the data service is not reachable"},
}


def _end(reason: str) -> bytes:
    return (json.dumps({"type": "end", "ts": int(time.time() * 1000), "reason": reason})
            + "\n").encode()


@router.get("/{worker}/tail", responses=TAIL_RESPONSES, response_class=StreamingResponse)
async def tail(ns: Namespace, worker: WorkerName, ctx: Ctx, principal: Auth,
               status: Annotated[str | None, Query(
                   pattern="^(ok|error)$",
                   description="error: outcome other than ok, or HTTP 5xx")] = None,
               search: Annotated[str | None, Query(
                   min_length=1, max_length=256,
                   description="case-insensitive text in the URL, console lines or "
                               "exceptions")] = None,
               sample: Annotated[float, Query(
                   gt=0, le=1, description="keep this fraction of the events")] = 1.0,
               ) -> StreamingResponse:
    """Live trace events of a worker (best effort: never stored, a slow client loses
    events and gets a `dropped` marker with the count)."""
    await namespace_doc(ctx, principal, ns)
    await worker_doc(ctx, ns, worker)
    if ctx.tail is None:
        raise ApiError(503, "tail_unavailable",
                       "this control API has no data service configured (WDL_DATA_URL)")
    filters = {"sample": repr(sample)} if sample != 1 else {}
    if status:
        filters["status"] = status
    if search:
        filters["search"] = search
    upstream = await ctx.tail.open(ns, worker, filters)

    async def lines() -> AsyncIterator[bytes]:
        # Cancelled when the client disconnects; closing the upstream response then
        # ends the data service's subscription too.
        try:
            async for chunk in upstream.aiter_raw():
                yield chunk
        except httpx.HTTPError:
            yield _end("upstream_failed")
        finally:
            await upstream.aclose()

    return StreamingResponse(lines(), media_type="application/x-ndjson",
                             headers={"cache-control": "no-store", "x-accel-buffering": "no"})
