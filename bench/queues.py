"""`python -m bench queues`: queue producer -> consumer throughput and delivery latency
through the platform, against a bare aiokafka produce -> consume in the same run.

* **platform**: `wdl dev`'s components in this process on embedded control backends,
  the message log on the real Kafka of `make services` (WDL_QUEUE_LOG, a topic of its
  own). A worker deployed with `wdl deploy` sends `--messages` messages with
  `sendBatch` (100 per call, `--concurrency` producing requests at once); its
  `queue()` consumer (max_batch_size 100, max_batch_timeout 0) takes each message's
  delivery latency (send time in the body to the start of its `queue()` call) and
  reports the batch to a sink of this process.
* **bare**: the same number of messages with aiokafka alone (idempotent, acks=all, 100
  per batch, the same concurrency) onto a topic with the same partitions, read back by
  a consumer group that commits after each fetch; latency is send time to read time.

Reported: messages/s from the first send to the last delivery, p50/p99 delivery latency
in ms of each side, `ratio` = platform / bare throughput (goal >= 0.5). The platform's
numbers hold the gateway hop of every send, the consumer's batching, the gateway hop and
the tenant's `queue()` of every batch, which is the cost being measured.

Other measurements of the same run plug in through `EXTRA` (see its docstring). The
empty `step.do` overhead of a Workflow (`step_do_p50_ms`, ...; bench/workflows_step.py)
is measured after it on a platform of its own (`--no-workflows` skips it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.dataplane.gateway import RecyclePolicy
from services.platform import Platform, PlatformOptions
from services.serving import HttpServer
from services.settings import Settings

TOKEN = "wdl_admin_bench"
NS = "bench"
WORKER = "queues-bench"
HOST = f"{NS}.workers.local"
PARTITIONS = 4
BATCH = 100

Extra = Callable[[Platform, argparse.Namespace], Awaitable[dict[str, Any]]]
EXTRA: list[Extra] = []
"""More measurements on the running platform of this benchmark, e.g. the Workflows
helper's empty `step.do` overhead: append an async function (platform, args) -> dict;
its keys are merged into the result."""

WRANGLER_TOML = f"""name = "{WORKER}"
main = "src/index.js"
compatibility_date = "2025-11-17"

[[queues.producers]]
binding = "Q"
queue = "bench"

[[queues.consumers]]
queue = "bench"
max_batch_size = {BATCH}
max_batch_timeout = 0
max_retries = 3
"""

TENANT = """
export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    const n = Number(url.searchParams.get("n") || "100");
    const sink = url.searchParams.get("sink");
    for (let i = 0; i < n; i += 100) {
      const t = Date.now();
      const batch = [];
      for (let j = i; j < Math.min(n, i + 100); j++) batch.push({ body: { t, sink } });
      await env.Q.sendBatch(batch);
    }
    return new Response("ok");
  },
  async queue(batch) {
    const now = Date.now();
    const lat = batch.messages.map((m) => now - m.body.t);
    await fetch(batch.messages[0].body.sink, { method: "POST", body: JSON.stringify(lat) });
  },
};
"""


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))] if ordered else 0.0


def bootstrap() -> str:
    found = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not found:
        sys.exit("KAFKA_BOOTSTRAP_SERVERS is not set (run `make services`, then "
                 "`set -a; . .wdl/services.env; set +a`)")
    return found


class LatencySink:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.done = asyncio.Event()
        self.expected = 0
        self.last_at = 0.0
        self.server: HttpServer | None = None

    async def start(self) -> str:
        async def hit(request: Request) -> PlainTextResponse:
            self.latencies.extend(json.loads(await request.body()))
            self.last_at = time.perf_counter()
            if len(self.latencies) >= self.expected:
                self.done.set()
            return PlainTextResponse("ok")

        self.server = HttpServer(Starlette(routes=[Route("/", hit, methods=["POST"])]),
                                 port=0, name="bench-sink")
        await self.server.start()
        return self.server.url + "/"

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


def deploy(project: Path, api_url: str) -> None:
    env = {**os.environ, "WDL_CONTROL_URL": api_url, "WDL_TOKEN": TOKEN, "WDL_NAMESPACE": NS}
    done = subprocess.run([sys.executable, "-m", "cli.main", "deploy", str(project),
                           "--create-namespace", "--no-bundle"], env=env, capture_output=True,
                          text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"wdl deploy failed:\n{done.stdout}\n{done.stderr}")


async def platform_side(args: argparse.Namespace, work: Path, servers: str,
                        result: dict[str, Any]) -> None:
    topic = f"bench.queues.{uuid.uuid4().hex[:8]}"
    env = {"WDL_DATA_DIR": str(work / "data"), "WDL_ADMIN_TOKEN": TOKEN,
           "WDL_QUEUE_LOG": f"kafka://{servers}?topic={topic}&group={topic}"
                            f"&partitions={PARTITIONS}"}
    os.environ["WDL_QUEUE_LOG"] = env["WDL_QUEUE_LOG"]
    settings = Settings.from_env(env, embedded=True)
    options = PlatformOptions(api_port=0, gateway_port=0, state_port=0, data_port=0,
                              scheduler_health_port=0, projector_health_port=0,
                              egress_allow_loopback=True, workerd_bin=args.workerd,
                              recycle=RecyclePolicy(interval=0))
    sink = LatencySink()
    sink_url = await sink.start()
    try:
        async with Platform(settings, options) as platform, httpx.AsyncClient(
                timeout=300, headers={"host": HOST}) as web:
            assert platform.api is not None and platform.gateway is not None
            project = work / "project"
            (project / "src").mkdir(parents=True)
            (project / "wrangler.toml").write_text(WRANGLER_TOML)
            (project / "src" / "index.js").write_text(TENANT)
            await asyncio.to_thread(deploy, project, platform.api.url)
            url = f"{platform.gateway.url}/{WORKER}"
            # Warm: isolate, topic, consumer group assignment.
            sink.expected = BATCH
            r = await web.get(url, params={"n": str(BATCH), "sink": sink_url})
            r.raise_for_status()
            await asyncio.wait_for(sink.done.wait(), 120)
            sink.latencies.clear()
            sink.done.clear()
            sink.expected = args.messages
            per = args.messages // args.concurrency
            t0 = time.perf_counter()
            answers = await asyncio.gather(*(web.get(url, params={"n": str(per),
                                                                  "sink": sink_url})
                                             for _ in range(args.concurrency)))
            sent_at = time.perf_counter()
            for a in answers:
                a.raise_for_status()
            await asyncio.wait_for(sink.done.wait(), 600)
            elapsed = sink.last_at - t0
            result["platform_msgs_per_s"] = round(len(sink.latencies) / elapsed, 1)
            result["platform_send_msgs_per_s"] = round(args.messages / (sent_at - t0), 1)
            result["platform_p50_ms"] = round(percentile(sink.latencies, 0.5), 1)
            result["platform_p99_ms"] = round(percentile(sink.latencies, 0.99), 1)
            for extra in EXTRA:
                result.update(await extra(platform, args))
    finally:
        os.environ.pop("WDL_QUEUE_LOG", None)
        await sink.stop()


async def bare_side(args: argparse.Namespace, servers: str, result: dict[str, Any]) -> None:
    topic = f"bench.bare.{uuid.uuid4().hex[:8]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=servers)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=servers, acks="all", enable_idempotence=True,
                                linger_ms=2)
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=servers, group_id=topic,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await producer.start()
    await consumer.start()
    latencies: list[float] = []
    try:
        async def produce(n: int, key: str) -> None:
            for i in range(0, n, BATCH):
                t = time.time() * 1000
                body = json.dumps({"t": t}).encode()
                futures = [await producer.send(topic, body, key=key.encode())
                           for _ in range(min(BATCH, n - i))]
                await asyncio.gather(*futures)

        async def consume(total: int) -> float:
            while len(latencies) < total:
                batches = await consumer.getmany(timeout_ms=200, max_records=BATCH)
                now = time.time() * 1000
                for records in batches.values():
                    latencies.extend(now - json.loads(r.value)["t"] for r in records)
                if batches:
                    await consumer.commit()
            return time.perf_counter()

        await produce(BATCH, "warm")
        await consume(BATCH)
        latencies.clear()
        per = args.messages // args.concurrency
        t0 = time.perf_counter()
        reader = asyncio.create_task(consume(per * args.concurrency))
        await asyncio.gather(*(produce(per, f"k{i}") for i in range(args.concurrency)))
        done_at = await asyncio.wait_for(reader, 600)
        result["bare_msgs_per_s"] = round(len(latencies) / (done_at - t0), 1)
        result["bare_p50_ms"] = round(percentile(latencies, 0.5), 1)
        result["bare_p99_ms"] = round(percentile(latencies, 0.99), 1)
    finally:
        await consumer.stop()
        await producer.stop()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    servers = bootstrap()
    result: dict[str, Any] = {"messages": args.messages, "concurrency": args.concurrency,
                              "partitions": PARTITIONS, "batch": BATCH}
    with tempfile.TemporaryDirectory(prefix="wdl-bench-queues-") as tmp:
        await bare_side(args, servers, result)
        await platform_side(args, Path(tmp), servers, result)
    result["ratio"] = round(result["platform_msgs_per_s"] / result["bare_msgs_per_s"], 3)
    result["goal_ratio"] = 0.5
    if not args.no_workflows:
        # Issue 13 asks for the empty step.do overhead in this bench's line too; it runs on
        # a platform of its own (bench/workflows_step.py, also `python -m bench workflows`).
        from bench.workflows_step import measure

        result.update(await measure(workerd=args.workerd))
    return result


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench queues")
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=10,
                        help="producing requests (platform) / producer tasks (bare) at once")
    parser.add_argument("--workerd", default=None, help="workerd binary (default: pinned)")
    parser.add_argument("--no-workflows", action="store_true",
                        help="skip the empty step.do overhead (bench/workflows_step.py)")
    return asyncio.run(run(parser.parse_args(argv)))
