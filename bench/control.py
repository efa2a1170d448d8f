"""`python -m bench control`: promote/rollback latency through the HTTP control API.

Starts one API process and one projector process on Kafka/Redis/PostgreSQL/S3
(fresh topic, Redis prefix, database and bucket), then sends N commands one
after another, alternating promote and rollback of one worker, each timed
from request to the response that carries its projected verdict. In the same
run it measures bare aiokafka send-and-ack latency (acks=all, idempotent, the
same settings as the event log) of records of the same size: the floor any
command path built on the log must sit on.

The timed commands are sent by a minimal HTTP/1.1 client (`plain`: one
keep-alive connection, a few µs per command) and, alternating with it in
blocks on the same stack, by httpx (`httpx_p50_ms`, `httpx_p99_ms`): httpx
spends ~2 ms of CPU per command, and on 2 cores that CPU is taken from the API
and projector being timed, so it measures the client as much as the platform.

Result: p50_ms, p99_ms (end to end, plain client), baseline_p50_ms, ratio_p50
(p50 / baseline), goal_met (p99 <= 10 ms), httpx_p50_ms / httpx_p99_ms. The
machine's own load shows in all of them: compare runs by ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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


class _Plain:
    """HTTP/1.1 over one keep-alive connection, nothing else: on 2 cores the
    client's own CPU per command (httpx spends ~2 ms) competes with the API and
    the projector it is timing, so the measured client should cost next to
    nothing. Only what this bench needs: JSON bodies, Content-Length answers."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.head = (f"Host: {parts.netloc}\r\nAuthorization: Bearer {token}\r\n"
                     "Content-Type: application/json\r\n")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def __aenter__(self) -> _Plain:
        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._writer is not None:
            self._writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        assert self._reader is not None and self._writer is not None
        self._writer.write(f"POST {path} HTTP/1.1\r\n{self.head}Content-Length: {len(body)}"
                           "\r\n\r\n".encode() + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.lower() == "content-length":
                length = int(value)
        if length is None:
            raise RuntimeError(f"answer without Content-Length: {lines}")
        return status, await self._reader.readexactly(length)


async def _commands(url: str, token: str, count: int, warmup: int,
                    clients: list[str], blocks: int = 4) -> dict[str, list[float]]:
    """`count` timed commands per client, the clients alternating in `blocks`
    blocks so that the log's growth and the machine's drift fall on each."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http, \
            _Plain(url, token) as plain:
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
        commands = [("/v1/namespaces/bench/workers/api/rollback", b"{}"),
                    ("/v1/namespaces/bench/workers/api/promote",
                     json.dumps({"version_id": versions[1]}).encode())]
        sent = 0

        async def one(client: str) -> float:
            nonlocal sent
            path, body = commands[sent % 2]
            sent += 1
            started = time.perf_counter()
            if client == "plain":
                status, text = await plain.post(path, body)
            else:
                r = await http.post(path, content=body,
                                    headers={"content-type": "application/json"})
                status, text = r.status_code, r.content
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200 or not json.loads(text)["verdict"]["accepted"]:
                raise RuntimeError(f"command {sent} failed: {status} {text[:300]!r}")
            return elapsed

        for client in clients:
            for _ in range(warmup):
                await one(client)
        samples: dict[str, list[float]] = {client: [] for client in clients}
        for block in range(blocks):
            for client in clients:
                n = count * (block + 1) // blocks - count * block // blocks
                samples[client] += [await one(client) for _ in range(n)]
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
    parser.add_argument("--client", choices=["plain", "httpx", "both"], default="both",
                        help="who sends the timed commands (both: plain and httpx, "
                             "alternating in blocks; the result keys are plain's)")
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
            clients = ["plain", "httpx"] if args.client == "both" else [args.client]
            by_client = asyncio.run(_commands(stack.url, stack.admin_token, args.commands,
                                              args.warmup, clients))
            samples = by_client[clients[0]]
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
        "goal_met": p99 <= GOAL_P99_MS, "client": clients[0],
        **{f"{c}_p{q}_ms": round(_percentile(v, q / 100) if q != 50 else statistics.median(v), 3)
           for c, v in by_client.items() if c != clients[0] for q in (50, 99)},
    }
