"""Structured logs: the JSON and text formats, format choice, request ids, verdict lines."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from projections.changes import Changes
from projections.fold import PartitionBatch
from projections.projector import _log_verdicts
from services.api.request_ids import (
    RequestIds,
    accept,
    correlation_for,
    current_correlation_id,
)
from services.logs import bound, choose_format, configure, context, formatter

pytestmark = pytest.mark.unit


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def _record(message: str = "appended %s", *args: Any, **extra: Any) -> logging.LogRecord:
    record = logging.getLogger("wdl.api").makeRecord(
        "wdl.api", logging.INFO, __file__, 1, message, args or ("x",), None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_lines_carry_fixed_fields_first_then_context_and_extras() -> None:
    with bound(request_id="req-1", namespace="demo"):
        line = formatter("json").format(_record(event_id="e-1", color_message="dup"))
    data = json.loads(line)
    assert list(data)[:4] == ["time", "level", "logger", "message"]
    assert (data["level"], data["logger"], data["message"]) == ("info", "wdl.api", "appended x")
    assert data["time"].endswith("Z") and "T" in data["time"]
    assert (data["request_id"], data["namespace"], data["event_id"]) == ("req-1", "demo", "e-1")
    assert "color_message" not in data and "\n" not in line


def test_context_does_not_leak_past_its_block() -> None:
    with bound(request_id="req-2"):
        assert context()["request_id"] == "req-2"
    assert "request_id" not in context()
    assert "request_id" not in json.loads(formatter("json").format(_record()))


def test_json_renders_exceptions_as_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.getLogger("x").makeRecord("x", logging.ERROR, __file__, 1, "failed",
                                                   (), sys.exc_info())
    data = json.loads(formatter("json").format(record))
    assert data["message"] == "failed" and "ValueError: boom" in data["exception"]


def test_text_is_for_people() -> None:
    with bound(request_id="req-3"):
        line = formatter("text").format(_record(event_id="e-3"))
    assert not line.startswith("{")
    assert "appended x" in line and "wdl.api" in line
    assert "request_id=req-3" in line and "event_id=e-3" in line


@pytest.mark.parametrize(("env", "tty", "piped_json", "expected"), [
    ({"WDL_LOG_FORMAT": "json"}, True, False, "json"),
    ({"WDL_LOG_FORMAT": "TEXT"}, False, True, "text"),
    ({}, False, True, "json"),     # `wdl up` / python -m … into a file or a pipe
    ({}, True, True, "text"),      # … on a terminal
    ({}, False, False, "text"),    # `wdl dev`
])
def test_format_choice(env: dict[str, str], tty: bool, piped_json: bool,
                       expected: str) -> None:
    stream = Tty() if tty else io.StringIO()
    assert choose_format(env, stream, json_when_piped=piped_json) == expected


def test_an_unknown_format_is_an_error() -> None:
    with pytest.raises(ValueError, match="WDL_LOG_FORMAT"):
        choose_format({"WDL_LOG_FORMAT": "yaml"}, io.StringIO())


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("restore_root")
def test_configure_replaces_only_its_own_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    before = len(root.handlers)
    assert configure(stream=first, env={"WDL_LOG_FORMAT": "json"}) == "json"
    assert configure(stream=second, env={"WDL_LOG_FORMAT": "json", "WDL_LOG_LEVEL": "debug"})
    assert len(root.handlers) == before + 1 and root.level == logging.DEBUG
    logging.getLogger("wdl.test").debug("hello %d", 1)
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["message"] == "hello 1"
    assert logging.getLogger("httpx").level == logging.WARNING


# --- request ids ----------------------------------------------------------------


@pytest.mark.parametrize("given", ["abc", "deploy-42.retry_1", "A" * 128,
                                   "01JF8SNHZXPE6Q4W3R2T1Y0ABC"])
def test_valid_request_ids_are_kept(given: str) -> None:
    assert accept(given) == given


@pytest.mark.parametrize("given", [None, "", "a" * 129, "has space", "semi;colon",
                                   "new\nline", "ünïcode", "a/b"])
def test_invalid_request_ids_are_replaced_by_a_uuid(given: str | None) -> None:
    made = accept(given)
    assert made != given and str(uuid.UUID(made)) == made


def test_correlation_ids() -> None:
    own = uuid.uuid4()
    assert correlation_for(str(own)) == own
    assert correlation_for("deploy-42") == correlation_for("deploy-42")
    assert correlation_for("deploy-42") != correlation_for("deploy-43")
    assert correlation_for("deploy-42").version == 5


async def _app_client() -> tuple[httpx.AsyncClient, list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []

    async def handler(request: Request) -> JSONResponse:
        seen.append({**context(), "correlation": current_correlation_id()})
        return JSONResponse({"ok": True})

    app = Starlette(routes=[Route("/{path:path}", handler)])
    transport = httpx.ASGITransport(app=RequestIds(app))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test"), seen


async def test_middleware_echoes_binds_and_resets() -> None:
    client, seen = await _app_client()
    async with client:
        r = await client.get("/v1/namespaces/demo/workers/hello/versions",
                             headers={"X-Request-Id": "req-9"})
        assert r.headers["x-request-id"] == "req-9"
        assert seen[-1] == {"request_id": "req-9", "correlation_id":
                            str(correlation_for("req-9")), "namespace": "demo",
                            "worker": "hello", "correlation": correlation_for("req-9")}
        r = await client.get("/v1/namespaces/Not_A_Name/x", headers={"X-Request-Id": "x y"})
        made = r.headers["x-request-id"]
        assert uuid.UUID(made) and seen[-1]["request_id"] == made
        assert "namespace" not in seen[-1]
    assert current_correlation_id() is None and "request_id" not in context()


# --- the projector's verdict lines ----------------------------------------------


def _row(offset: int, accepted: bool, correlation: uuid.UUID | None) -> dict[str, Any]:
    return {"log_offset": offset, "accepted": accepted, "event_id": uuid.uuid4(),
            "event_type": "namespace.created", "correlation_id": correlation,
            "namespace": "demo", "worker": None,
            "reason_code": None if accepted else "namespace_exists"}


def test_projector_logs_new_rejections_with_their_correlation_id(
        caplog: pytest.LogCaptureFixture) -> None:
    corr = uuid.uuid4()
    changes = Changes(audit=[_row(3, False, uuid.uuid4()), _row(4, True, corr),
                             _row(5, False, corr), _row(6, False, None)])
    with caplog.at_level(logging.INFO, logger="wdl.projector"):
        _log_verdicts({0: PartitionBatch(3, 7, changes)}, {0: 5})
    lines = [r for r in caplog.records if r.name == "wdl.projector"]
    # offset 3 was already projected (a restart refolds it); 4 was accepted
    assert [r.getMessage() for r in lines] == ["rejected namespace.created: namespace_exists"] * 2
    first: Any = lines[0]
    assert (first.correlation_id, first.offset, first.code) == (str(corr), 5, "namespace_exists")
    assert not hasattr(lines[1], "correlation_id") and not hasattr(lines[1], "worker")


def test_a_call_site_writes_at_most_its_burst_a_window_then_says_what_it_dropped() -> None:
    out = io.StringIO()
    now = [0.0]
    configure(stream=out, env={"WDL_LOG_FORMAT": "json", "WDL_LOG_BURST": "3"})
    handler = logging.getLogger().handlers[-1]
    from projections.logs import RateLimit

    limit = next(f for f in handler.filters if isinstance(f, RateLimit))
    limit._clock = lambda: now[0]
    log = logging.getLogger("wdl.test.ratelimit")
    try:
        for i in range(50):
            log.warning("invocation of %s failed: %s", "ns/wf", i)
        log.error("errors always pass")
        now[0] = 61.0
        log.warning("invocation of %s failed: %s", "ns/wf", "later")
    finally:
        configure(stream=io.StringIO(), env={"WDL_LOG_FORMAT": "json"})
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    warned = [line for line in lines if line["logger"] == "wdl.test.ratelimit"]
    assert [line["message"] for line in warned] == [
        "invocation of ns/wf failed: 0", "invocation of ns/wf failed: 1",
        "invocation of ns/wf failed: 2", "errors always pass",
        "invocation of ns/wf failed: later"]
    assert warned[-1]["suppressed"] == 47
