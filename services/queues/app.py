"""The queue service's HTTP API (loopback, internal token): the gateway's WdlQueue calls it.

`POST /send {namespace, queue, delay, messages: [{id, body (base64), contentType,
delaySeconds}]}` appends the messages and answers once the log acknowledged
them (`{ok: true}`), or `{error, message}` with a status: 404 `queue_not_found`,
429 `queue_backlog_full` (the queue's backlog bound, docs/queues.md "Bounds"),
400/413 for what breaks Cloudflare's limits (the tenant wrapper checks them
first, with Cloudflare's words). `delay` is the producer binding's
delivery_delay ("" when it has none: the queue's own applies).
`GET /held?namespace=&queue=&limit=`: messages this replica holds for the queue (read,
not running: a dead-letter queue without a consumer keeps them); `POST /redrive
{namespace, queue, to}` moves them to queue `to` (attempts reset), `{moved}`.
`GET /healthz`, `GET /metrics`. Every route is behind the internal token (services/internal.py:
`Authorization: Bearer` for health checks and scrapers).
"""

from __future__ import annotations

import base64
import binascii
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.internal import InternalTokenGuard
from services.queues.consumer import Consumer
from services.queues.metrics import QueueMetrics
from services.queues.model import (
    CONTENT_TYPES,
    MAX_BATCH_BYTES,
    MAX_BATCH_MESSAGES,
    MAX_DELAY_S,
    MAX_MESSAGE_BYTES,
    QueueMessage,
)
from services.queues.store import QueueLog

QueueLookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]


class Refused(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _err(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _delay(value: object, what: str) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int | float) or isinstance(value, bool) or \
            not 0 <= value <= MAX_DELAY_S:
        raise Refused(400, "invalid_delay", f"{what} must be a number of seconds from 0 to "
                      f"{MAX_DELAY_S}")
    return int(value)


def parse_send(body: Any, queue_delay: int, now_ms: int) -> list[QueueMessage]:
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        raise Refused(400, "invalid_request", "`messages` is required")
    items = body["messages"]
    if not items:
        raise Refused(400, "invalid_request", "sendBatch() requires at least one message")
    if len(items) > MAX_BATCH_MESSAGES:
        raise Refused(413, "batch_too_large", f"batch message count of {len(items)} exceeds limit "
                      f"of {MAX_BATCH_MESSAGES}")
    default = _delay(body.get("delaySeconds"), "delaySeconds")
    binding = _delay(body.get("delay"), "delivery_delay")
    base = default if default is not None else binding if binding is not None else queue_delay
    out: list[QueueMessage] = []
    total = 0
    for item in items:
        if not isinstance(item, dict):
            raise Refused(400, "invalid_request", "each message is an object")
        try:
            raw = base64.b64decode(str(item.get("body", "")), validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, "invalid_request", "a message body is not base64") from None
        if len(raw) > MAX_MESSAGE_BYTES:
            raise Refused(413, "message_too_large", f"message length of {len(raw)} bytes exceeds "
                          f"limit of {MAX_MESSAGE_BYTES}")
        total += len(raw)
        ctype = item.get("contentType", "json")
        if ctype not in CONTENT_TYPES:
            raise Refused(400, "invalid_content_type", f"Unknown content type {ctype!r}")
        own = _delay(item.get("delaySeconds"), "delaySeconds")
        delay = own if own is not None else base
        out.append(QueueMessage(id=uuid.uuid4().hex, namespace=str(body["namespace"]),
                                queue=str(body["queue"]), body=raw, content_type=ctype,
                                timestamp=now_ms, not_before=now_ms + delay * 1000
                                if delay else 0))
    if total > MAX_BATCH_BYTES:
        raise Refused(413, "batch_too_large", f"batch size of {total} bytes exceeds limit of "
                      f"{MAX_BATCH_BYTES}")
    return out


def create_app(log_of: Callable[[], QueueLog | None], queue_of: QueueLookup,
               internal_token: str, metrics: QueueMetrics,
               health: Callable[[], dict[str, Any]],
               consumer_of: Callable[[], Consumer | None] = lambda: None) -> InternalTokenGuard:

    async def held(request: Request) -> JSONResponse:
        consumer = consumer_of()
        if consumer is None:
            return _err(404, "not_found", "no such route")
        q = request.query_params
        limit = min(1000, int(q.get("limit") or 100))
        rows = [{"id": d.message.id, "timestamp": d.message.timestamp,
                 "attempts": d.message.attempts, "content_type": d.message.content_type,
                 "size": len(d.message.body), "not_before": d.message.not_before,
                 "body": base64.b64encode(d.message.body[:1024]).decode("ascii")}
                for d in consumer.held(f"{q.get('namespace')}/{q.get('queue')}")[:limit]]
        return JSONResponse({"messages": rows})

    async def redrive(request: Request) -> JSONResponse:
        consumer = consumer_of()
        if consumer is None:
            return _err(404, "not_found", "no such route")
        body = await request.json()
        ns, queue, to = body.get("namespace"), body.get("queue"), body.get("to")
        if not all(isinstance(x, str) and x for x in (ns, queue, to)):
            return _err(400, "invalid_request", "`namespace`, `queue` and `to` are required")
        if await queue_of(ns, to) is None:
            return _err(404, "queue_not_found", f"Queue {to} does not exist")
        return JSONResponse({"moved": await consumer.redrive(f"{ns}/{queue}", to)})

    async def send(request: Request) -> JSONResponse:
        qlog = log_of()
        if qlog is None:
            return _err(503, "queues_unavailable", "the queue service is starting")
        try:
            body = await request.json()
        except ValueError:
            return _err(400, "invalid_request", "the body is not JSON")
        ns, queue = body.get("namespace"), body.get("queue")
        if not isinstance(ns, str) or not isinstance(queue, str):
            return _err(400, "invalid_request", "`namespace` and `queue` are required")
        doc = await queue_of(ns, queue)
        if doc is None:
            return _err(404, "queue_not_found", f"Queue {queue} does not exist")
        try:
            messages = parse_send(body, int(doc.get("delivery_delay") or 0),
                                  int(time.time() * 1000))
        except Refused as exc:
            return _err(exc.status, exc.code, exc.message)
        consumer = consumer_of()
        if consumer is not None:
            # What this replica holds of the queue (read, not finished): a queue nobody
            # consumes would otherwise grow the log and the consumer's memory for good.
            held = consumer.backlog.get(f"{ns}/{queue}", 0)
            bound = consumer.bounds.max_backlog_bytes
            if held + sum(len(m.body) for m in messages) > bound:
                metrics.refused.labels(ns, "backlog").inc()
                return _err(429, "queue_backlog_full", f"queue {queue} has a backlog of "
                            f"{held} bytes; the limit is {bound} bytes (consume or delete "
                            "its messages first)")
        await qlog.append(messages)
        metrics.produced.labels(ns).inc(len(messages))
        return JSONResponse({"ok": True, "ids": [m.id for m in messages]})

    async def healthz(request: Request) -> JSONResponse:
        doc = health()
        return JSONResponse(doc, status_code=200 if doc.get("ok") else 503)

    async def prometheus(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return InternalTokenGuard(Starlette(routes=[
        Route("/send", send, methods=["POST"]), Route("/held", held),
        Route("/redrive", redrive, methods=["POST"]), Route("/healthz", healthz),
        Route("/metrics", prometheus)]), internal_token)
