"""Queues end to end on real workerd through `wdl deploy`: the wrangler project
tests/fixtures/queue_project (two producers, one with a delivery delay, and a consumer with
max_retries 2 and a dead-letter queue) deploys unchanged; its consumer reports every
delivery to a sink the test owns. Embedded (`wdl dev`'s SQLite message log) and Kafka.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from harness.endpoints import Endpoints
from tests.embedded import embedded_platform
from tests.platform_stack import platform_stack
from tests.queues.rig import PROJECT, TOKEN, Producer, Sink

pytestmark = pytest.mark.integration


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with Sink() as s:
        yield s


async def wait_held(cli: Callable[..., Awaitable[str]], n: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(json.loads(await cli("queues", "dlq", "list", "jobs-dlq", "--json"))) >= n:
            return
        await asyncio.sleep(0.3)
    raise AssertionError(f"the dead-letter queue does not hold {n} messages")


async def exercise(producer: Producer, sink: Sink, cli: Callable[..., Awaitable[str]]) -> None:
    # sendBatch and send: each message is delivered, acked once (nothing retried).
    sent = await producer.send([{"sink": sink.url, "n": i} for i in range(60)])
    assert sent == {"sent": 60}
    await producer.send({"sink": sink.url, "n": 60})
    counts = await sink.wait_for(set(range(61)))
    assert all(d["attempts"] == 1 for d in sink.seen if d["n"] < 61)
    ids = {d["id"] for d in sink.seen if d["n"] < 61}
    assert len(ids) == 61

    # A retried message is delivered 1 + max_retries times, then dead-lettered; a batch
    # that throws is retried whole.
    await producer.send({"sink": sink.url, "n": 1000, "fail": True})
    await producer.send({"sink": sink.url, "n": 2000, "throw": True})
    counts = await sink.wait_for({1000, 2000}, times=3)
    await asyncio.sleep(1.5)  # no fourth attempt comes
    counts = sink.counts()
    assert counts[1000] == 3 and counts[2000] == 3, counts
    attempts = sorted(d["attempts"] for d in sink.seen if d["n"] == 1000)
    assert attempts == [1, 2, 3]
    # The dead-letter queue holds both; a consumer of it gets them with their ids.
    # `wdl queues dlq list` shows them; redrive moves them back to `jobs`, where they fail
    # again, three times each, and land in the dead-letter queue once more.
    await wait_held(cli, 2)
    held = json.loads(await cli("queues", "dlq", "list", "jobs-dlq", "--json"))
    assert sorted(m["attempts"] for m in held) == [1, 1] and len({m["id"] for m in held}) == 2
    moved = json.loads(await cli("queues", "dlq", "redrive", "jobs-dlq", "--json"))
    assert moved == {"moved": 2, "to": "jobs"}
    await sink.wait_for({1000, 2000}, times=6)
    await wait_held(cli, 2)
    await cli("queues", "consumer", "add", "jobs-dlq", "jobs-worker", "--batch-timeout", "0")
    await sink.wait_for({1000, 2000}, queue="jobs-dlq")
    dead = {d["n"]: d for d in sink.seen if d["queue"] == "jobs-dlq"}
    first = {d["n"]: d["id"] for d in sink.seen if d["queue"] == "jobs" and d["attempts"] == 1}
    assert dead[1000]["id"] == first[1000] and dead[2000]["id"] == first[2000]

    # The delayed producer's message (delivery_delay 2) is not delivered before its time.
    t0 = time.time()
    await producer.send({"sink": sink.url, "n": 3000}, later=True)
    await sink.wait_for({3000})
    got = next(d for d in sink.seen if d["n"] == 3000)
    assert got["at"] / 1000 >= t0 - 1  # the timestamp is the send's
    assert time.time() - t0 >= 2


async def test_embedded(services: Endpoints, tmp_path: Path, sink: Sink,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`wdl dev`'s shape: every component in one process on embedded backends."""
    async with embedded_platform(services, tmp_path, monkeypatch, project=PROJECT,
                                 internal_token=TOKEN) as (platform, wdl_emb):
        assert platform.gateway is not None and platform.queues is not None

        async def cli(*args: str) -> str:
            return await wdl_emb(*args, "--ns", "emb")

        producer = Producer(platform.gateway.url, "emb")
        try:
            await exercise(producer, sink, cli)
        finally:
            await producer.close()
    assert (tmp_path / "data" / "queues.sqlite").exists()


async def test_kafka(services: Endpoints, fresh_database: str,
                     unique_name: Callable[[str], str], tmp_path: Path,
                     monkeypatch: pytest.MonkeyPatch, sink: Sink) -> None:
    """`wdl up`'s shape: messages on their Kafka topic beside the control log."""
    monkeypatch.delenv("WDL_QUEUE_LOG", raising=False)
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=frozenset({"api", "projector", "state", "data",
                                                    "gateway", "queues"}),
                              egress_allow_loopback=True) as stack:
        ns = unique_name("qu")[:30].lower().replace("_", "-")
        await stack.wdl("ns", "create", ns)
        await stack.deploy(ns, PROJECT)

        async def cli(*args: str) -> str:
            return await stack.wdl(*args, "--ns", ns)

        producer = Producer(stack.gateway, ns)
        try:
            await exercise(producer, sink, cli)
        finally:
            await producer.close()
