"""Idempotency keys and validation: retries and refusals append nothing.

An `Idempotency-Key` retry returns the first outcome (same event id,
`replayed: true`) and the log's end positions do not move, also once the
projection's verdict window has forgotten the key (the audit table answers).
Every refused input leaves the log and the blob store as they were.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import Endpoints
from services.api.launcher import ControlStack, stack_env
from services.blobstore.factory import open_blob_store
from services.crypto.rootkey import RootKey


@pytest.fixture
def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
          tmp_path: Path) -> Iterator[ControlStack]:
    env = stack_env(services.as_env(), topic=unique_name("idem"), partitions=4,
                    redis_prefix=f"{unique_name('i')}:", database_url=fresh_database,
                    bucket=unique_name("b"), admin_token=f"adm-{secrets.token_hex(16)}",
                    root_keys=RootKey.generate().export())
    with ControlStack(env, tmp_path / "procs", api_replicas=2) as s:
        yield s


def log_end(stack: ControlStack) -> dict[int, int]:
    async def ends() -> dict[int, int]:
        async with KafkaEventLog(KafkaSettings(
                bootstrap_servers=stack.env["KAFKA_BOOTSTRAP_SERVERS"],
                topic=stack.env["WDL_TOPIC"])) as log:
            return await log.end_positions()

    return asyncio.run(ends())


def blob_digests(stack: ControlStack) -> set[str]:
    async def listing() -> set[str]:
        async with open_blob_store(stack.env["WDL_BLOB_URL"], environ=stack.env) as blobs:
            return {d async for d in blobs.list()}

    return asyncio.run(listing())


def module(name: str, content: bytes, type_: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "content_b64": base64.b64encode(content).decode()}
    if type_ is not None:
        out["type"] = type_
    return out


GOOD = b"export default { fetch() { return new Response('ok') } }"


def deploy(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"main_module": "index.js", "compatibility_date": "2025-06-01",
                            "modules": [module("index.js", GOOD)]}
    body.update(changes)
    return body


def test_idempotency_key_replays_the_first_outcome(stack: ControlStack) -> None:
    a, b = (api.url for api in stack.apis)
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(headers=headers, timeout=30) as http:
        assert http.post(f"{a}/v1/namespaces", json={"name": "idem"}).status_code == 201
        w = "/v1/namespaces/idem/workers/api"
        first = http.post(f"{a}{w}/versions?promote=true", json=deploy(),
                          headers={"Idempotency-Key": "deploy-1"})
        assert first.status_code == 201, first.text
        end = log_end(stack)
        # The retry goes to the other replica: still the first outcome, nothing appended.
        again = http.post(f"{b}{w}/versions?promote=true", json=deploy(),
                          headers={"Idempotency-Key": "deploy-1"})
        assert again.status_code == 201
        f, g = first.json(), again.json()
        assert (g["version_id"], g["event_id"], g["promote"]["event_id"]) == (
            f["version_id"], f["event_id"], f["promote"]["event_id"])
        assert (f["replayed"], g["replayed"], g["promote"]["replayed"]) == (False, True, True)
        assert log_end(stack) == end

        # A refused command replays its refusal (409) without a second event.
        body = {"version_id": f["version_id"]}
        refused = http.post(f"{a}{w}/promote", json=body, headers={"Idempotency-Key": "p-1"})
        assert refused.status_code == 409
        end = log_end(stack)
        replay = http.post(f"{b}{w}/promote", json=body, headers={"Idempotency-Key": "p-1"})
        assert replay.status_code == 409
        assert replay.json()["error"]["event_id"] == refused.json()["error"]["event_id"]
        assert replay.json()["error"]["replayed"] is True
        assert log_end(stack) == end

        # The same key for another request is refused, not replayed.
        other = http.put(f"{a}/v1/namespaces/idem/secrets/X", json={"value": "v"},
                         headers={"Idempotency-Key": "p-1"})
        assert (other.status_code, other.json()["error"]["code"]) == (
            422, "idempotency_key_reused")
        assert log_end(stack) == end

        # Keys belong to a token: another token's same key is a new request.
        token = http.post(f"{a}/v1/tokens", json={"role": "deployer",
                                                   "namespaces": ["idem"]}).json()["token"]
        end = log_end(stack)
        mine = http.post(f"{a}{w}/promote", json=body, headers={
            "Idempotency-Key": "p-1", "Authorization": f"Bearer {token}"})
        assert mine.status_code == 409 and mine.json()["error"]["replayed"] is False
        assert sum(log_end(stack).values()) == sum(end.values()) + 1

        # Past the projection's verdict window the audit table still answers.
        second = http.post(f"{a}{w}/versions", json=deploy(), headers={"Idempotency-Key": "old"})
        assert second.status_code == 201
        pos = second.json()["position"]
        client: Any = redis.Redis.from_url(stack.env["REDIS_URL"])
        prefix = stack.env["WDL_REDIS_PREFIX"]
        generation = int(client.get(f"{prefix}current") or 0)
        removed = client.hdel(f"{prefix}g{generation}:idem:{pos['partition']}",
                              "bootstrap:old")
        client.hdel(f"{prefix}g{generation}:verdicts:{pos['partition']}",
                    second.json()["event_id"])
        client.close()
        assert removed == 1
        end = log_end(stack)
        late = http.post(f"{b}{w}/versions", json=deploy(), headers={"Idempotency-Key": "old"})
        assert late.status_code == 201
        assert (late.json()["event_id"], late.json()["replayed"]) == (
            second.json()["event_id"], True)
        assert log_end(stack) == end


def test_refused_input_leaves_log_and_blobs_untouched(stack: ControlStack) -> None:
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    with httpx.Client(base_url=stack.url, headers=headers, timeout=60) as http:
        assert http.post("/v1/namespaces", json={"name": "strict"}).status_code == 201
        w = "/v1/namespaces/strict/workers/api"
        assert http.post(f"{w}/versions", json=deploy()).status_code == 201
        end, blobs = log_end(stack), blob_digests(stack)
        huge = b"x" * (10 * 1024 * 1024 + 1)
        cases: list[tuple[str, str, Any, int, str]] = [
            ("POST", "/v1/namespaces", {"name": "Not_A_Label"}, 422, "validation_failed"),
            ("POST", "/v1/namespaces/strict/workers/Bad_Name/versions", deploy(), 422,
             "validation_failed"),
            ("POST", f"{w}/versions", deploy(cron_triggers=["every tuesday"]), 400,
             "invalid_event"),
            ("POST", f"{w}/versions", deploy(compatibility_date="2025-02-30"), 400,
             "invalid_event"),
            ("POST", f"{w}/versions", deploy(compatibility_flags=["Bad Flag"]), 400,
             "invalid_event"),
            ("POST", f"{w}/versions", deploy(vars={"1bad": "x"}), 400, "invalid_event"),
            ("POST", f"{w}/versions", deploy(main_module="missing.js"), 400, "invalid_bundle"),
            ("POST", f"{w}/versions", deploy(modules=[module("index.js", GOOD),
                                                      module("index.js", GOOD)]),
             400, "invalid_bundle"),
            ("POST", f"{w}/versions", deploy(modules=[module("index.js", GOOD),
                                                      module("../etc/passwd", b"x")]),
             400, "invalid_bundle"),
            ("POST", f"{w}/versions", deploy(modules=[module("index.js", GOOD, "text")]),
             400, "invalid_bundle"),
            ("POST", f"{w}/versions", deploy(modules=[{"name": "index.js",
                                                        "content_b64": "not base64!"}]),
             400, "invalid_bundle"),
            ("POST", f"{w}/versions", deploy(modules=[module("index.js", GOOD),
                                                      module("big.bin", huge)]),
             413, "bundle_too_large"),
            ("POST", f"{w}/versions", deploy(modules=[module("index.js", GOOD)] + [
                module(f"m{i}.txt", b"x") for i in range(1000)]), 413, "bundle_too_large"),
            ("POST", f"{w}/promote", {"version_id": "no such id!"}, 422, "validation_failed"),
            ("POST", "/v1/namespaces/strict/workers/ghost/promote", {"version_id": "v1"}, 404,
             "worker_not_found"),
            ("POST", "/v1/namespaces/ghost/workers/api/promote", {"version_id": "v1"}, 404,
             "namespace_not_found"),
            ("POST", f"{w}/rollback", {}, 409, "no_previous_version"),
            ("PUT", f"{w}/secrets/KEY", {"value": ""}, 422, "validation_failed"),
            ("PUT", f"{w}/secrets/KEY", {"value": "x" * 70_000}, 422, "validation_failed"),
            ("DELETE", f"{w}/secrets/NOPE", None, 404, "secret_not_found"),
            ("POST", "/v1/namespaces/strict/hosts", {"pattern": "Not A Host"}, 400,
             "invalid_event"),
            ("DELETE", "/v1/namespaces/strict/hosts/unclaimed.example.com", None, 404,
             "host_not_found"),
            ("POST", "/v1/tokens", {"role": "deployer"}, 400, "invalid_event"),
            ("POST", "/v1/leases/BAD SCOPE/takeover", {"holder": "x"}, 422,
             "validation_failed"),
            ("GET", "/v1/audit?cursor=bm9wZQ", None, 400, "invalid_cursor"),
        ]
        for method, path, body, status, code in cases:
            r = http.request(method, path, json=body)
            assert (r.status_code, r.json()["error"]["code"]) == (status, code), (path, r.text)
            if code in ("invalid_event", "invalid_bundle", "validation_failed"):
                assert r.json()["error"]["field"]
        bad_key = http.post(f"{w}/versions", json=deploy(),
                            headers={"Idempotency-Key": "spaces are not allowed"})
        assert (bad_key.status_code, bad_key.json()["error"]["code"]) == (
            400, "invalid_idempotency_key")
        limit = 25 * 1024 * 1024 * 4 // 3 + 2 * 1024 * 1024
        oversized = http.post(f"{w}/versions", content=b"{" + b" " * limit + b"}",
                              headers={"Content-Type": "application/json"})
        assert (oversized.status_code, oversized.json()["error"]["code"]) == (
            413, "request_too_large")
        assert log_end(stack) == end
        assert blob_digests(stack) == blobs
