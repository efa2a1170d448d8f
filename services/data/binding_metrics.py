"""Counts every KV/R2 call the data service serves, and its errors, per namespace.

Plain ASGI around the data app: it reads the path (`/kv/{ns}/{res}/v/{key}`,
`/r2/{ns}/{bucket}/{op}`) and the response status, and only for an error
response the first body chunk (to label it with the handler's error code).
The KV get hot path pays a path split and a counter increment.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.data.metrics import DataMetrics

_KV_OPS = {("v", "GET"): "get", ("v", "PUT"): "put", ("v", "DELETE"): "delete",
           ("bulk", "POST"): "get_bulk", ("keys", "GET"): "list"}
_R2_OPS = frozenset({"head", "get", "put", "delete", "list", "mpu/create", "mpu/part",
                     "mpu/complete", "mpu/abort"})
MAX_ERROR_BODY = 4096


def binding_op(path: str, method: str) -> tuple[str, str, str] | None:
    """(kind, namespace, op) of a binding call, or None for any other path."""
    parts = path.split("/", 5)  # "", kind, ns, resource, op...
    if len(parts) < 5 or not parts[2]:
        return None
    kind, ns = parts[1], parts[2]
    if kind == "kv":
        op = _KV_OPS.get((parts[4], method))
        return ("kv", ns, op) if op else None
    if kind == "ratelimit":
        return ("ratelimit", ns, "limit") if parts[4] == "limit" else None
    if kind == "r2":
        op = "/".join(parts[4:])
        return ("r2", ns, op if op in _R2_OPS else "other")
    return None


def _code_of(status: int, body: bytes) -> str:
    try:
        doc: Any = json.loads(body)
    except ValueError:
        return str(status)
    if isinstance(doc, dict):
        inner = doc.get("error")
        code = inner.get("code") if isinstance(inner, dict) else doc.get("code")
        if isinstance(code, str):
            return code
    return str(status)


class BindingMetrics:
    def __init__(self, app: ASGIApp, metrics: DataMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = binding_op(scope["path"], scope["method"]) if scope["type"] == "http" else None
        if target is None:
            await self.app(scope, receive, send)
            return
        kind, ns, op = target
        seen: dict[str, Any] = {"status": 0, "body": b"", "missing": False}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                # A KV get of an absent key is a normal answer, not an error.
                seen["missing"] = any(k == b"x-kv-missing" for k, _ in message.get("headers", ()))
            elif message["type"] == "http.response.body" and seen["status"] >= 400 and \
                    len(seen["body"]) < MAX_ERROR_BODY:
                seen["body"] += message.get("body", b"")[:MAX_ERROR_BODY]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception:
            self.metrics.binding_call(ns, kind, op, "internal_error")
            raise
        status = seen["status"]
        failed = status >= 400 and not seen["missing"]
        self.metrics.binding_call(ns, kind, op, _code_of(status, seen["body"]) if failed else None)
