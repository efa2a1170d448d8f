"""Racing promotes through two API processes: the log is the arbiter.

100 pairs of promotes, each pair naming the same expected worker version and
sent at once, one through each API replica: every pair ends with exactly one
success and one 409 `stale_version`, and a rebuild of the projections from
the log reaches the very same verdicts.
"""

from __future__ import annotations

import asyncio
import base64
import random
import secrets
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import Endpoints
from projections.audit_store import AuditStore
from projections.reader import ProjectionReader
from projections.rebuild import rebuild
from projections.redis_store import RedisProjectionStore
from services.api.launcher import ControlStack, stack_env
from services.crypto.rootkey import RootKey

PAIRS = 100
PARTITIONS = 4


@pytest.fixture
def stack(services: Endpoints, fresh_database: str, unique_name: Callable[[str], str],
          tmp_path: Path) -> Iterator[ControlStack]:
    env = stack_env(services.as_env(), topic=unique_name("race"), partitions=PARTITIONS,
                    redis_prefix=f"{unique_name('r')}:", database_url=fresh_database,
                    bucket=unique_name("b"), admin_token=f"adm-{secrets.token_hex(16)}",
                    root_keys=RootKey.generate().export())
    with ControlStack(env, tmp_path / "procs", api_replicas=2) as s:
        yield s


def deploy_body(text: str) -> dict[str, Any]:
    code = f"export default {{ fetch() {{ return new Response({text!r}) }} }}".encode()
    return {"main_module": "index.js", "compatibility_date": "2025-06-01",
            "modules": [{"name": "index.js", "content_b64": base64.b64encode(code).decode()}]}


async def test_conflicting_promotes_through_two_replicas(stack: ControlStack) -> None:
    headers = {"Authorization": f"Bearer {stack.admin_token}"}
    limits = httpx.Limits(max_connections=2 * PAIRS, max_keepalive_connections=2 * PAIRS)
    async with httpx.AsyncClient(headers=headers, timeout=60, limits=limits) as http:
        a, b = (api.url for api in stack.apis)
        assert (await http.post(f"{a}/v1/namespaces", json={"name": "race"})).status_code == 201
        for other in ("race2", "race3"):
            assert (await http.post(f"{b}/v1/namespaces", json={"name": other})).status_code \
                == 201

        async def prepare(i: int) -> tuple[str, str, str, int]:
            ns = ("race", "race2", "race3")[i % 3]
            worker = f"w{i}"
            ids = []
            for n in range(2):
                r = await http.post(f"{(a, b)[n]}/v1/namespaces/{ns}/workers/{worker}/versions",
                                    json=deploy_body(f"{worker}-{n}"))
                assert r.status_code == 201, r.text
                ids.append(r.json()["version_id"])
            doc = (await http.get(f"{a}/v1/namespaces/{ns}/workers/{worker}")).json()
            return ns, worker, f"{ids[0]}|{ids[1]}", int(doc["version"])

        prepared = []
        for start in range(0, PAIRS, 25):
            prepared += await asyncio.gather(*(prepare(i) for i in range(start, start + 25)))

        rnd = random.Random(7)
        calls = []
        for ns, worker, ids, expected in prepared:
            va, vb = ids.split("|")
            pair = [(a, va), (b, vb)]
            rnd.shuffle(pair)
            for url, version in pair:
                calls.append((ns, worker, url, version, expected))

        async def promote(ns: str, worker: str, url: str, version: str,
                          expected: int) -> httpx.Response:
            return await http.post(f"{url}/v1/namespaces/{ns}/workers/{worker}/promote",
                                   json={"version_id": version, "expected_version": expected})

        responses = await asyncio.gather(*(promote(*c) for c in calls))

    outcomes: dict[str, tuple[bool, str | None, int]] = {}
    for i in range(PAIRS):
        answers = responses[2 * i:2 * i + 2]
        assert sorted(r.status_code for r in answers) == [200, 409], [r.text for r in answers]
        for r in answers:
            body = r.json()
            if r.status_code == 200:
                assert body["verdict"]["accepted"] is True
                outcomes[body["event_id"]] = (True, None, body["position"]["partition"])
            else:
                assert body["error"]["code"] == "stale_version"
                outcomes[body["error"]["event_id"]] = (
                    False, "stale_version", body["error"]["position"]["partition"])
    assert len(outcomes) == 2 * PAIRS

    # Replay the whole log into a fresh generation: the same verdicts come back.
    stack.stop()
    env = stack.env
    async with AsyncExitStack() as s:
        log = await s.enter_async_context(KafkaEventLog(KafkaSettings(
            bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"], topic=env["WDL_TOPIC"],
            partitions=PARTITIONS)))
        store = await s.enter_async_context(RedisProjectionStore(
            env["REDIS_URL"], prefix=env["WDL_REDIS_PREFIX"]))
        audit = await s.enter_async_context(AuditStore(env["DATABASE_URL"]))
        before = await store.current_generation()
        report = await rebuild(log, store, audit, grace_s=0.1)
        assert report.switched and report.generation != before
        reader = ProjectionReader(store)
        for event_id, (accepted, code, partition) in outcomes.items():
            verdict = await reader.verdict(event_id, partition)
            assert verdict is not None
            assert (verdict.accepted, verdict.code) == (accepted, code)
