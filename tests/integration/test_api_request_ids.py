"""Request ids across the real API and projector processes (Kafka, Redis, PostgreSQL).

The API echoes `X-Request-Id` (or one it made), records it as the correlation id of
the events it appends, and logs it as JSON lines (its stderr is a file here); the
projector's line for a rejected event carries the same correlation id.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventlog.envelope import Envelope
from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import Endpoints
from services.api.commands import read_envelope
from services.api.launcher import ControlStack, ManagedProcess, stack_env
from services.api.request_ids import correlation_for
from services.crypto.rootkey import RootKey


@pytest.fixture
def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
          tmp_path: Path) -> Iterator[ControlStack]:
    env = stack_env(services.as_env(), topic=unique_name("rid"), partitions=2,
                    redis_prefix=f"{unique_name('r')}:", database_url=fresh_database,
                    bucket=unique_name("b"), admin_token=f"adm-{secrets.token_hex(16)}",
                    root_keys=RootKey.generate().export())
    with ControlStack(env, tmp_path / "procs") as s:
        yield s


def envelope_at(stack: ControlStack, position: dict[str, int]) -> Envelope:
    async def read() -> Envelope | None:
        async with KafkaEventLog(KafkaSettings(
                bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"],
                topic=stack.env["WDL_TOPIC"])) as log:
            return await read_envelope(log, position["partition"], position["offset"])

    found = asyncio.run(read())
    assert found is not None
    return found


def json_lines(process: ManagedProcess) -> list[dict[str, Any]]:
    out = []
    for line in process.log_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def wait_for_line(process: ManagedProcess, match: Callable[[dict[str, Any]], bool],
                  timeout: float = 20.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        found = [r for r in json_lines(process) if match(r)]
        if found:
            return found[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"no matching line in:\n{process.log_text()[-4000:]}")
        time.sleep(0.1)


def test_request_id_is_echoed_recorded_and_logged(stack: ControlStack) -> None:
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=30) as http:
        # A caller's id that is not a UUID: echoed as sent, recorded as its uuid5.
        rid = f"deploy-{secrets.token_hex(4)}.try_1"
        created = http.post("/v1/namespaces", json={"name": "rid"},
                            headers={"X-Request-Id": rid})
        assert created.status_code == 201, created.text
        assert created.headers["x-request-id"] == rid
        event = created.json()
        assert envelope_at(stack, event["position"]).correlation_id == correlation_for(rid)
        audit = http.get("/v1/audit", params={"request_id": rid}).json()["items"]
        assert [(a["event_id"], a["correlation_id"]) for a in audit] == [
            (event["event_id"], str(correlation_for(rid)))]

        # A UUID is its own correlation id; an invalid id is replaced by a fresh UUID.
        own = str(uuid.uuid4())
        again = http.post("/v1/namespaces", json={"name": "rid"},
                          headers={"X-Request-Id": own})
        assert again.status_code == 409 and again.headers["x-request-id"] == own
        rejected = again.json()["error"]
        assert envelope_at(stack, rejected["position"]).correlation_id == uuid.UUID(own)
        for bad in ("has space", "x" * 129, "semi;colon", ""):
            r = http.get("/v1/namespaces", headers={"X-Request-Id": bad})
            assert r.status_code == 200
            made = r.headers["x-request-id"]
            assert made != bad and uuid.UUID(made)
        made = http.post("/v1/namespaces", json={"name": "rid-two"}).headers["x-request-id"]
        assert uuid.UUID(made)

    # One id, greppable across both processes' JSON logs.
    api_line = wait_for_line(stack.apis[0], lambda r: r.get("request_id") == rid
                             and r.get("message") == "appended namespace.created")
    assert api_line["correlation_id"] == str(correlation_for(rid))
    assert api_line["event_id"] == event["event_id"]
    assert {"time", "level", "logger"} <= set(api_line)
    verdict = wait_for_line(stack.projector, lambda r: r.get("correlation_id") == own)
    assert verdict["message"] == "rejected namespace.created: namespace_exists"
    assert (verdict["event_id"], verdict["level"]) == (rejected["event_id"], "info")
    assert verdict["namespace"] == "rid"
