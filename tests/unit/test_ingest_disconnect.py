"""A gateway that gives up on a post mid-body (its timeout, a recycled process) is not
an error of the data service: the ingest endpoints answer without a traceback."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from starlette.applications import Starlette

from services.data.invocations import invocation_routes
from services.data.metrics import DataMetrics
from services.tail.hub import TailHub
from services.tail.routes import tail_routes

pytestmark = pytest.mark.unit


async def _cut_off_post(app: Any, path: str) -> list[dict[str, Any]]:
    incoming: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"events": [{"name', "more_body": True},
        {"type": "http.disconnect"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(),
             "query_string": b"", "root_path": "", "server": ("127.0.0.1", 80),
             "client": ("127.0.0.1", 5000),
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", b"400")]}
    await app(scope, receive, send)
    return sent


@pytest.mark.parametrize("path", ["/tail", "/invocations"])
async def test_a_post_cut_off_mid_body_is_answered_not_raised(path: str) -> None:
    metrics = DataMetrics(CollectorRegistry())
    app = Starlette(routes=[*tail_routes(TailHub()), *invocation_routes(metrics)])
    sent = await _cut_off_post(app, path)
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 400
