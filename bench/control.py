"""`python -m bench control`: promote/rollback latency through the HTTP control API.

Starts one API process and one projector process on Kafka/Redis/PostgreSQL/S3
(fresh topic, Redis prefix, database and bucket), then sends N commands one
after another, alternating promote and rollback of one worker, each timed
from request to the response that carries its projected verdict. In the same
run it measures bare aiokafka send-and-ack latency (acks=all, idempotent, the
same settings as the event log) of records of the same size: the floor any
command path built on the log must sit on.

Result: p50_ms, p99_ms (end to end), baseline_p50_ms, ratio_p50 (p50 / baseline),
goal_met (p99 <= 10 ms). The machine's own load shows in both: compare runs by ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg
from aiokafka import AIOKafkaProducer

from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import load
from services.api.launcher import ControlStack, stack_env
from services.crypto.rootkey import RootKey

GOAL_P99_MS = 10.0  # issue 14: command -> projected verdict


def _percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index]


async def _baseline(bootstrap: str, topic: str, count: int, size: int) -> list[float]:
    # The event log creates the topic (brokers here do not auto-create); the
    # timed sends go through a bare producer.
    async with KafkaEventLog(KafkaSettings(bootstrap_servers=bootstrap, topic=topic,
                                           partitions=1)):
        pass
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                enable_idempotence=True, linger_ms=0)
    await producer.start()
    try:
        payload = secrets.token_bytes(size)
        await producer.send_and_wait(topic, payload, key=b"warm", partition=0)
        samples = []
        for i in range(count):
            started = time.perf_counter()
            await producer.send_and_wait(topic, payload, key=str(i).encode(), partition=0)
            samples.append((time.perf_counter() - started) * 1000)
        return samples
    finally:
        await producer.stop()


async def _commands(url: str, token: str, count: int, warmup: int) -> list[float]:
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http:
        r = await http.post("/v1/namespaces", json={"name": "bench"})
        r.raise_for_status()
        versions = []
        for n in range(2):
            code = f"export default {{ fetch() {{ return new Response('{n}') }} }}".encode()
            r = await http.post("/v1/namespaces/bench/workers/api/versions?promote=true", json={
                "main_module": "index.js", "compatibility_date": "2025-06-01",
                "modules": [{"name": "index.js", "content_b64": base64.b64encode(code).decode()}]})
            r.raise_for_status()
            versions.append(r.json()["version_id"])
        samples = []
        for i in range(warmup + count):
            started = time.perf_counter()
            if i % 2 == 0:
                r = await http.post("/v1/namespaces/bench/workers/api/rollback", json={})
            else:
                r = await http.post("/v1/namespaces/bench/workers/api/promote",
                                    json={"version_id": versions[1]})
            elapsed = (time.perf_counter() - started) * 1000
            if r.status_code != 200 or not r.json()["verdict"]["accepted"]:
                raise RuntimeError(f"command {i} failed: {r.status_code} {r.text[:300]}")
            if i >= warmup:
                samples.append(elapsed)
        return samples


def _database(admin_url: str, name: str, *, drop: bool) -> str:
    base, _, _ = admin_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if drop:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench control")
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--baseline", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--partitions", type=int, default=8)
    args = parser.parse_args(argv)
    endpoints = load()
    missing = endpoints.missing()
    if missing:
        raise SystemExit(f"missing services: {', '.join(missing)} (run `make services`)")
    assert endpoints.database_url and endpoints.kafka_bootstrap_servers
    run = uuid.uuid4().hex[:10]
    db_name = f"bench_control_{run}"
    database_url = _database(endpoints.database_url, db_name, drop=False)
    env = stack_env(endpoints.as_env(), topic=f"bench-control-{run}",
                    partitions=args.partitions, redis_prefix=f"bench-control-{run}:",
                    database_url=database_url, bucket=f"bench-control-{run}",
                    admin_token=f"adm-{secrets.token_hex(16)}",
                    root_keys=RootKey.generate().export())
    try:
        with tempfile.TemporaryDirectory(prefix="wdl-bench-") as tmp, \
                ControlStack(env, Path(tmp)) as stack:
            samples = asyncio.run(_commands(stack.url, stack.admin_token, args.commands,
                                            args.warmup))
        baseline = asyncio.run(_baseline(endpoints.kafka_bootstrap_servers,
                                         f"bench-control-baseline-{run}", args.baseline, 400))
    finally:
        _database(endpoints.database_url, db_name, drop=True)
    p50, p99 = statistics.median(samples), _percentile(samples, 0.99)
    base_p50 = statistics.median(baseline)
    return {
        "benchmark": "control", "commands": len(samples), "baseline_sends": len(baseline),
        "p50_ms": round(p50, 3), "p90_ms": round(_percentile(samples, 0.90), 3),
        "p99_ms": round(p99, 3), "max_ms": round(max(samples), 3),
        "baseline_p50_ms": round(base_p50, 3),
        "baseline_p99_ms": round(_percentile(baseline, 0.99), 3),
        "ratio_p50": round(p50 / base_p50, 2), "goal_p99_ms": GOAL_P99_MS,
        "goal_met": p99 <= GOAL_P99_MS,
    }
