"""Last line of defence: an unexpected exception becomes a plain 500.

Starlette's own handler for `Exception` answers and then re-raises, so the
server logs the whole traceback, whose messages can quote request data. This
middleware answers instead and logs only the exception type and where it was
raised, so a secret sent in a request can never reach a log this way.
"""

from __future__ import annotations

import json
import logging
import traceback

from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("wdl.api")
_BODY = json.dumps({"error": {"code": "internal_error", "message": "internal error"}}).encode()


class ErrorGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            frames = traceback.extract_tb(exc.__traceback__)
            where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
            log.error("unhandled %s at %s", type(exc).__name__, where)
            if started:
                return
            await send({"type": "http.response.start", "status": 500,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(_BODY)).encode())]})
            await send({"type": "http.response.body", "body": _BODY})
