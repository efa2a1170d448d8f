"""Request ids: accepted from `X-Request-Id` or made here, echoed, logged, recorded.

Every log record written while a request is handled carries its `request_id` (and
the namespace and worker its path names); every event the request appends carries
it as the envelope's `correlation_id`. That field is a UUID, so a request id that is
not one maps to a name-based UUID (uuid5) of it: the same id, the same correlation
id, on every process and in every run. Both are logged.
"""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.logs import bound

HEADER = "X-Request-Id"
_HEADER_KEY = HEADER.lower().encode()
REQUEST_ID_PATTERN = r"^[A-Za-z0-9._-]{1,128}$"
VALID = re.compile(REQUEST_ID_PATTERN)
# The uuid5 namespace of request ids; changing it would break the link between
# ids already in the log and their correlation ids.
_ID_NAMESPACE = uuid.UUID("8f5b0b8e-6f61-5d2a-9a53-5a8f1e0c7d11")
# Only names that could be valid go into the log: a path is the client's text.
_PATH = re.compile(r"^/v1/namespaces/([a-z0-9-]{1,63})(?:/|$)(?:workers/([a-z0-9-]{1,63})(?:/|$))?")

_correlation: ContextVar[uuid.UUID | None] = ContextVar("wdl_correlation_id", default=None)


def accept(header: str | None) -> str:
    """The caller's id when it is ≤ 128 of [A-Za-z0-9._-], else a new UUID."""
    if header is not None and VALID.fullmatch(header):
        return header
    return str(uuid.uuid4())


def correlation_for(request_id: str) -> uuid.UUID:
    """The request id itself when it is a UUID, else its uuid5."""
    try:
        return uuid.UUID(request_id)
    except ValueError:
        return uuid.uuid5(_ID_NAMESPACE, request_id)


def current_correlation_id() -> uuid.UUID | None:
    """The correlation id of the request being handled (None outside a request)."""
    return _correlation.get()


class RequestIds:
    """ASGI middleware; outermost, so even the error guard's 500 carries the id."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((value.decode("latin-1") for key, value in scope["headers"]
                      if key == _HEADER_KEY), None)
        request_id = accept(given)
        correlation = correlation_for(request_id)
        fields = {"request_id": request_id, "correlation_id": str(correlation)}
        where = _PATH.match(scope.get("path", ""))
        if where:
            fields["namespace"] = where[1]
            if where[2]:
                fields["worker"] = where[2]
        echo = (_HEADER_KEY, request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        token = _correlation.set(correlation)
        try:
            with bound(**fields):
                await self.app(scope, receive, send_with_id)
        finally:
            _correlation.reset(token)
