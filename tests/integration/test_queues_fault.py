"""FAULT: SIGKILL the queue consumer while it works through 10,000 messages.

The control plane, the gateway and real workerd run in this process
(platform_stack, Kafka); the consumer is `python -m services.queues` in a
process of its own. 10,000 messages go onto the queue's Kafka topic; once the
first consumer has delivered some of them it is killed with SIGKILL and a second
one takes over through the consumer group. The test worker reports every
delivery to a sink the test owns: every message is delivered at least once,
none is lost, and the duplicates (at-least-once redeliveries from the last
commit) are counted and reported, not asserted away.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from harness.endpoints import ROOT, Endpoints
from services.queues.__main__ import queue_log_url
from services.queues.model import QueueMessage
from services.queues.store import KafkaQueueLog, open_queue_log
from services.settings import Settings
from tests.platform_stack import platform_stack
from tests.queues.rig import PROJECT, Sink

pytestmark = pytest.mark.integration
TOTAL = 10_000
TOKEN = "wdl-internal-test-token"  # platform_stack's


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with Sink() as s:
        yield s


@contextlib.asynccontextmanager
async def consumer(env: dict[str, str], log: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "services.queues", cwd=ROOT, env=env, stdout=out,
            stderr=out)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"not within {timeout}s: {what}")


async def test_sigkill_consumer_loses_nothing(services: Endpoints, fresh_database: str,
                                              unique_name: Callable[[str], str],
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              sink: Sink) -> None:
    monkeypatch.delenv("WDL_QUEUE_LOG", raising=False)
    async with platform_stack(services, fresh_database, unique_name, tmp_path, monkeypatch,
                              components=frozenset({"api", "projector", "state", "data",
                                                    "gateway"}),
                              egress_allow_loopback=True) as stack:
        ns = unique_name("qf")[:30].lower().replace("_", "-")
        await stack.wdl("ns", "create", ns)
        await stack.deploy(ns, PROJECT)
        # Bigger batches: the test is about losing nothing, not about batch sizes.
        await stack.wdl("queues", "consumer", "add", "jobs", "jobs-worker", "--batch-size",
                        "100", "--batch-timeout", "1", "--dead-letter-queue", "jobs-dlq",
                        "--ns", ns)
        settings = Settings.from_env(stack.backend_env)
        url = queue_log_url(settings, {})
        producer = open_queue_log(url, consume=False)
        assert isinstance(producer, KafkaQueueLog)
        await producer.start()
        try:
            now = int(time.time() * 1000)
            for start in range(0, TOTAL, 500):
                await producer.append([QueueMessage(
                    id=uuid.uuid4().hex, namespace=ns, queue="jobs", content_type="json",
                    body=f'{{"sink": "{sink.url}", "n": {i}}}'.encode(), timestamp=now)
                    for i in range(start, min(TOTAL, start + 500))])
        finally:
            await producer.stop()

        env = {**stack.backend_env, "WDL_GATEWAY_URL": stack.gateway,
               "WDL_INTERNAL_TOKEN": TOKEN, "WDL_QUEUES_PORT": "0", "PYTHONPATH": str(ROOT)}
        env.pop("WDL_QUEUE_LOG", None)
        log = tmp_path / "consumers.log"
        t0 = time.monotonic()
        async with consumer(env, log) as first:
            await wait_until(lambda: len(sink.counts()) >= 1500, 90,
                             f"the first consumer delivers 1500 messages ({log})")
            first.send_signal(signal.SIGKILL)
            await first.wait()
        at_kill = len(sink.seen)
        async with consumer(env, log):
            await sink.wait_for(set(range(TOTAL)), timeout=120)
        counts = sink.counts()
        duplicates = sum(c - 1 for c in counts.values())
        print(f"\nqueues fault: {TOTAL} messages, {at_kill} deliveries before SIGKILL, "
              f"{len(sink.seen)} deliveries in all, {duplicates} duplicates, "
              f"{time.monotonic() - t0:.1f} s")
        assert set(counts) == set(range(TOTAL))  # none lost, none invented
        assert all(d["attempts"] == 1 for d in sink.seen)  # nothing was retried as failed
