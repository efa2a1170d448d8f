"""The internal-token wall in front of every internal HTTP endpoint of the platform.

Every process's internal server (state, data, D1, queues, workflows, the objects
supervisor, the health and metrics servers) is wrapped in `InternalTokenGuard`: a
request must carry the platform's internal token (`WDL_INTERNAL_TOKEN`), as

- `x-wdl-internal-token: <token>` (the platform's own calls), or
- `Authorization: Bearer <token>` (health checks and Prometheus scrapers, which can
  send that header but no custom one),

or it gets `401 {code, message}` before any routing, whatever the path or method:
a local user of a platform host can connect to every loopback port, so being on
loopback proves nothing. An empty token lets nobody in (fail closed).

Plain ASGI, no per-request objects: it sits on the hottest paths (the gateway's
`/sync` barrier, every KV call). It lives with the projections because the
projector's metrics server uses it and must not import `services`;
`services.internal` re-exports it for everyone else.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Iterable
from typing import Final

from starlette.types import ASGIApp, Receive, Scope, Send

HEADER: Final = "x-wdl-internal-token"
_HEADER = HEADER.encode()
_AUTHORIZATION = b"authorization"
_BEARER = b"bearer "
CODE: Final = "unauthorized"
MESSAGE: Final = "this endpoint requires the platform's internal token"
_BODY = json.dumps({"code": CODE, "message": MESSAGE}).encode()
_START = {
    "type": "http.response.start", "status": 401,
    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store"),
                (b"www-authenticate", b'Bearer realm="wdl-internal"'),
                (b"content-length", str(len(_BODY)).encode())],
}


def internal_headers(token: str) -> dict[str, str]:
    """What a platform caller sends."""
    return {HEADER: token}


def bearer_headers(token: str) -> dict[str, str]:
    """What a health check or scraper sends (the same token, the standard header)."""
    return {"authorization": f"Bearer {token}"}


def token_matches(headers: Iterable[tuple[bytes, bytes]], token: bytes) -> bool:
    """True if one of the (lower-cased name, value) pairs presents `token` (either form).
    Constant-time in the token's value."""
    if not token:
        return False
    for name, value in headers:
        if name == _HEADER:
            given = value
        elif name == _AUTHORIZATION and value[:7].lower() == _BEARER:
            given = value[7:].strip()
        else:
            continue
        if hmac.compare_digest(given, token):
            return True
    return False


class InternalTokenGuard:
    """`InternalTokenGuard(app, token)`: `app` sees only requests that carry the token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            if not token_matches(scope["headers"], self.token):
                await send(_START)
                await send({"type": "http.response.body", "body": _BODY})
                return
        elif kind == "websocket" and not token_matches(scope["headers"], self.token):
            await send({"type": "websocket.close", "code": 1008})
            return
        await self.app(scope, receive, send)
