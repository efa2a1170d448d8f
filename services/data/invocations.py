"""`POST /invocations`: request metrics, counted by the gateway itself.

The gateway counts every invocation of a tenant worker (fetch with its status,
outcome `ok` or `exception`, wall time measured around the call; scheduled,
queue, workflow and service-binding calls with status class `none`) into an
in-memory aggregate per (namespace, worker), and posts it here in one batch
at most about once a second (workerd/gateway/metrics.js). So request metrics
cost no trace per request and do not depend on anyone tailing the worker.

Body: `{"workers": [{"namespace", "worker", "requests": [[status_class,
outcome, n], ...], "exceptions": n, "buckets": [n, ...], "sum": seconds[,
"websockets": n]}], "dropped": n, "tail_consumers": {"delivered": n, "dropped": {reason:
n}}}` (the last optional: Tail Workers' deliveries); `buckets` has one count per
DURATION_BUCKETS bound and +Inf; `websockets` the WebSocket upgrades (101s) among the
requests.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from services.data.metrics import DURATION_BUCKETS, DataMetrics

MAX_BODY = 4 * 1024 * 1024
MAX_COUNT = 1 << 40
STATUS_CLASSES = frozenset({"1xx", "2xx", "3xx", "4xx", "5xx", "none"})


def _count(value: object) -> int | None:
    ok = isinstance(value, int) and not isinstance(value, bool) and 0 <= value < MAX_COUNT
    return value if ok else None  # type: ignore[return-value]


def _worker(doc: object) -> tuple[str, str, list[tuple[str, str, int]], int, list[int],
                                  float, int] | None:
    if not isinstance(doc, dict):
        return None
    ns, worker = doc.get("namespace"), doc.get("worker")
    if not isinstance(ns, str) or not isinstance(worker, str) or not ns or not worker:
        return None
    requests: list[tuple[str, str, int]] = []
    for row in doc.get("requests") or []:
        if not isinstance(row, list) or len(row) != 3:
            return None
        status_class, outcome, n = row[0], row[1], _count(row[2])
        if status_class not in STATUS_CLASSES or not isinstance(outcome, str) or n is None:
            return None
        requests.append((status_class, outcome, n))
    exceptions = _count(doc.get("exceptions", 0))
    raw_buckets = doc.get("buckets") or [0] * (len(DURATION_BUCKETS) + 1)
    if exceptions is None or not isinstance(raw_buckets, list) or \
            len(raw_buckets) != len(DURATION_BUCKETS) + 1:
        return None
    buckets = [_count(n) for n in raw_buckets]
    seconds = doc.get("sum", 0)
    websockets = _count(doc.get("websockets", 0))
    if any(n is None for n in buckets) or not isinstance(seconds, int | float) or \
            isinstance(seconds, bool) or seconds < 0 or websockets is None:
        return None
    return (ns, worker, requests, exceptions, [n or 0 for n in buckets], float(seconds),
            websockets)


def _tail_consumers(doc: object) -> tuple[int, dict[str, int]] | None:
    """`{"delivered": n, "dropped": {reason: n}}`: Tail Workers' deliveries (tail.js);
    malformed parts are left out (metrics only, never a reason to refuse the batch)."""
    if not isinstance(doc, dict):
        return None
    delivered = _count(doc.get("delivered", 0)) or 0
    raw = doc.get("dropped")
    dropped: dict[str, int] = {}
    for reason, value in (raw.items() if isinstance(raw, dict) else ()):
        n = _count(value)
        if isinstance(reason, str) and n:
            dropped[reason] = n
    return delivered, dropped


def invocation_routes(metrics: DataMetrics) -> list[BaseRoute]:
    async def ingest(request: Request) -> Response:
        try:
            raw = await request.body()
        except ClientDisconnect:
            # The gateway's flush was cut off; it counts the batch as dropped.
            return Response(status_code=400)
        if len(raw) > MAX_BODY:
            return JSONResponse({"code": "batch_too_large", "message": f"at most {MAX_BODY}"},
                                413)
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = None
        workers = body.get("workers") if isinstance(body, dict) else None
        if not isinstance(workers, list):
            return JSONResponse({"code": "invalid_batch", "message": "workers must be a list"},
                                400)
        parsed = [_worker(w) for w in workers]
        if any(p is None for p in parsed):
            return JSONResponse({"code": "invalid_batch", "message": "malformed worker entry"},
                                400)
        for p in parsed:
            assert p is not None
            metrics.invocations(*p)
        dropped = _count(body.get("dropped", 0))
        if dropped:
            metrics.invocations_dropped.inc(dropped)
        tails = _tail_consumers(body.get("tail_consumers"))
        if tails is not None:
            metrics.tail_consumers(*tails)
        return Response(status_code=204)

    return [Route("/invocations", ingest, methods=["POST"])]
