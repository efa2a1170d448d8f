"""The data service's tail endpoints (behind its internal token).

* `POST /tail` `{"events": [...], "dropped": N}`: a batch from the gateway;
  `dropped` counts events the gateway itself could not deliver (its buffer was
  full or an earlier post failed).
* `GET /tail/stream?namespace=&worker=[&status=ok|error][&search=][&sample=]`:
  NDJSON. First a `connected` line, then `event` lines, `dropped` markers, a
  `heartbeat` line whenever nothing else was sent for `heartbeat_s`, and an
  `end` line when the server ends the stream (its maximum duration, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from services.tail.events import parse_event
from services.tail.filters import InvalidFilter, TailFilter
from services.tail.hub import TailHub, TooManySubscribers, marker
from services.tail.interest import TailInterest

MAX_BATCH_BYTES = 8 * 1024 * 1024
NDJSON = "application/x-ndjson"


class TailObserver(Protocol):
    """Where lost events are counted (the data service's metrics). Request metrics do
    not come from here: the gateway counts invocations itself (services/data/invocations.py),
    tailed or not."""

    def received(self, count: int) -> None: ...

    def dropped(self, stage: str, count: int) -> None: ...


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status)


def tail_routes(hub: TailHub, observer: TailObserver | None = None, *,
                heartbeat_s: float = 10.0, max_duration_s: float = 3600.0,
                interest: TailInterest | None = None,
                refresh_share: Callable[[str], Awaitable[None]] | None = None,
                ) -> list[BaseRoute]:
    async def ingest(request: Request) -> Response:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BATCH_BYTES:
            return _error(413, "batch_too_large", f"at most {MAX_BATCH_BYTES} bytes")
        try:
            body = json.loads(await request.body())
        except ClientDisconnect:
            # The gateway gave up on this post (timeout, process recycled): it counts
            # the batch as dropped in its next one; nobody is left to answer.
            return Response(status_code=400)
        except ValueError:
            return _error(400, "invalid_batch", "the body is not JSON")
        raw_events = body.get("events") if isinstance(body, dict) else None
        if not isinstance(raw_events, list):
            return _error(400, "invalid_batch", "events must be a list")
        invalid = 0
        for raw in raw_events:
            event = parse_event(raw)
            if event is None:
                invalid += 1
                continue
            hub.publish(event)
        if observer is not None:
            observer.received(len(raw_events) - invalid)
            lost = body.get("dropped")
            if isinstance(lost, int) and not isinstance(lost, bool) and lost > 0:
                observer.dropped("gateway", lost)
            if invalid:
                observer.dropped("invalid", invalid)
        return Response(status_code=204)

    async def stream(request: Request) -> Response:
        q = request.query_params
        namespace, worker = q.get("namespace"), q.get("worker")
        if not namespace or not worker:
            return _error(400, "invalid_tail", "namespace and worker are required")
        try:
            filter_ = TailFilter.from_query(q)
        except InvalidFilter as exc:
            return _error(400, "invalid_tail", str(exc))
        if refresh_share is not None:
            # The namespace's `tails` share (its limits record, cached a few seconds);
            # unreadable, the cached or default cap stands.
            with contextlib.suppress(Exception):
                await refresh_share(namespace)
        try:
            sub = hub.subscribe(namespace, worker, filter_)
        except TooManySubscribers as exc:
            return _error(429, "too_many_tails", str(exc))
        if interest is not None:
            # Not `connected` before the state service has it: gateways load the worker
            # with a tail consumer from then on (services/state/tails.py).
            try:
                await interest.ensure()
            except Exception as exc:
                hub.unsubscribe(sub)
                interest.changed()
                return _error(503, "tail_unavailable",
                              f"the state service did not take the subscription: {exc!r}")

        async def lines() -> AsyncIterator[bytes]:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + max_duration_s
            try:
                yield marker("connected", namespace=namespace, worker=worker,
                             filter=filter_.to_query(), heartbeat_s=heartbeat_s)
                while True:
                    remaining = deadline - loop.time()
                    if remaining <= 0:
                        yield marker("end", reason="max_duration")
                        return
                    try:
                        async with asyncio.timeout(min(heartbeat_s, remaining)):
                            line = await sub.next()
                    except TimeoutError:
                        yield marker("heartbeat")
                        continue
                    if line is None:
                        yield marker("end", reason="shutdown")
                        return
                    yield line
            finally:
                # Runs when the client goes away too (the response task is cancelled).
                hub.unsubscribe(sub)
                if interest is not None:
                    interest.changed()

        return StreamingResponse(lines(), media_type=NDJSON,
                                 headers={"cache-control": "no-store",
                                          "x-accel-buffering": "no"})

    return [Route("/tail", ingest, methods=["POST"]),
            Route("/tail/stream", stream, methods=["GET"])]
