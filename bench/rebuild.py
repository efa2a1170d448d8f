"""`python -m bench rebuild [--events N]`: full rebuild of Redis + PostgreSQL from Kafka.

Writes a realistic history to a fresh topic, then measures, in the same run,
(1) the bare consume-and-decode rate of that topic with aiokafka and the
codec (the baseline: no projector can be faster than reading its input),
(2) a full rebuild of both projections into shadow generations, switched in,
(3) the I/O floor: the same reads and as many Redis commands and audit rows
written by as many processes, without the fold (bench/rebuild_floor.py), and
(4) `verify_live` of the rebuilt projections (one fold, streamed comparison),
(5) the servers' floor: the CPU PostgreSQL, Redis and Kafka alone spend on the
rebuild's output loaded with their own bulk paths (bench/rebuild_servers.py),
which bounds any rebuild of this history on this machine
(`servers_floor_events_per_s`).

`peak_rss_mb` is the largest sum of the resident memory of this process and
every worker at one moment during the rebuild (`verify_peak_rss_mb`: during
verify); the getrusage peaks of the main process and of the largest worker
are kept as `peak_main_rss_mb` / `peak_worker_rss_mb`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import time
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from bench import rebuild_servers
from bench.history import history
from bench.rebuild_floor import RssSampler, io_floor
from eventlog.codec import DEFAULT_CODEC
from eventlog.kafka import KafkaEventLog, KafkaSettings
from harness.endpoints import load
from projections.audit_models import generation_schema
from projections.audit_store import AuditStore
from projections.rebuild import rebuild, verify_live
from projections.redis_store import RedisProjectionStore


async def _write(log: KafkaEventLog, events: int, chunk: int = 5000) -> float:
    started = time.perf_counter()
    buf = []
    for envelope in history(events):
        buf.append(envelope)
        if len(buf) >= chunk:
            await log.append_many(buf)
            buf.clear()
    if buf:
        await log.append_many(buf)
    return time.perf_counter() - started


async def _baseline(bootstrap: str, topic: str, ends: dict[int, int]) -> tuple[int, float]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                max_partition_fetch_bytes=8 * 1024 * 1024,
                                fetch_max_bytes=64 * 1024 * 1024)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in ends]
        consumer.assign(tps)
        for tp in tps:
            consumer.seek(tp, 0)
        decode = DEFAULT_CODEC.decode
        count = 0
        total = sum(ends.values())
        started = time.perf_counter()
        while count < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            for messages in batch.values():
                for m in messages:
                    decode(m.value)
                count += len(messages)
        return count, time.perf_counter() - started
    finally:
        await consumer.stop()


async def _fresh_database(url: str) -> str:
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    base = url.rsplit("/", 1)[0]
    async with await psycopg.AsyncConnection.connect(f"{base}/postgres",
                                                     autocommit=True) as conn:
        await conn.execute(f'CREATE DATABASE "{name}"')
    return f"{base}/{name}"


async def _drop_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    async with await psycopg.AsyncConnection.connect(f"{base}/postgres",
                                                     autocommit=True) as conn:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def run(events: int, partitions: int, batch: int, verify: bool,
              workers: int = 1, servers_floor: bool = True) -> dict[str, Any]:
    ep = load()
    if not (ep.kafka_bootstrap_servers and ep.redis_url and ep.database_url):
        raise SystemExit("needs KAFKA_BOOTSTRAP_SERVERS, REDIS_URL, DATABASE_URL "
                         "(make services && . .wdl/services.env)")
    topic = f"bench-rebuild-{uuid.uuid4().hex[:8]}"
    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    database = await _fresh_database(ep.database_url)
    settings = KafkaSettings(bootstrap_servers=ep.kafka_bootstrap_servers, topic=topic,
                             partitions=partitions)
    store = RedisProjectionStore(ep.redis_url, prefix=prefix)
    try:
        async with (KafkaEventLog(settings) as log, store, AuditStore(database) as audit,
                    RssSampler() as rss):
            write_s = await _write(log, events)
            ends = await log.end_positions()
            total = sum(ends.values())
            broker = rebuild_servers.kafka_broker_pid()
            broker_before = None if broker is None else rebuild_servers.process_cpu_s(broker)
            base_count, base_s = await _baseline(ep.kafka_bootstrap_servers, topic, ends)
            broker_after = None if broker is None else rebuild_servers.process_cpu_s(broker)
            rss.phase()
            report = await rebuild(log, store, audit, verify=False, grace_s=0.0,
                                   batch_size=batch, workers=workers)
            rebuild_rss = rss.phase()
            servers: dict[str, Any] = {}
            if servers_floor and report.audit_generation is not None:
                pg = await rebuild_servers.postgres_floor(
                    database, generation_schema(report.audit_generation))
                rd = await rebuild_servers.redis_floor(ep.redis_url, prefix, report.generation)
                kafka_cpu = (None if broker_before is None or broker_after is None
                             else broker_after - broker_before)
                servers = rebuild_servers.bound(total, {
                    "postgres_copy": pg["copy_cpu_s"], "postgres_index": pg["index_cpu_s"],
                    "redis": rd["cpu_s"], "kafka_read": kafka_cpu}, os.cpu_count() or 1)
                servers["servers_floor_detail"] = {
                    "postgres_rows": pg["rows"], "postgres_bytes": pg["bytes"],
                    "postgres_indexes": pg["indexes"],
                    "postgres_copy_wall_s": round(pg["copy_wall_s"], 2),
                    "postgres_index_wall_s": round(pg["index_wall_s"], 2),
                    "redis_commands": rd["commands"], "redis_bytes": rd["bytes"],
                    "redis_wall_s": round(rd["wall_s"], 2)}
                rss.phase()
            floor = await io_floor(settings, store, audit, partitions=partitions,
                                   workers=workers, batch_size=batch, events=total,
                                   writes=report.writes)
            rss.phase()
            verify_s = None
            verified = None
            verify_rss = None
            if verify:
                started = time.perf_counter()
                verified = (await verify_live(log, store, audit, workers=workers,
                                              batch_size=batch)).ok
                verify_s = round(time.perf_counter() - started, 2)
                verify_rss = rss.phase()
            rate = total / report.seconds
            floor_rate = floor["events"] / floor["seconds"]
            result = {
                "events": total,
                "partitions": partitions,
                "workers": workers,
                "write_s": round(write_s, 2),
                "rebuild_s": round(report.seconds, 2),
                "events_per_s": round(rate),
                "baseline_events_per_s": round(base_count / base_s),
                "ratio": round(rate / (base_count / base_s), 3),
                "io_floor_s": round(floor["seconds"], 2),
                "io_floor_events_per_s": round(floor_rate),
                "ratio_io_floor": round(rate / floor_rate, 3),
                "redis_commands": report.writes.get("commands"),
                "redis_bytes": report.writes.get("bytes"),
                "audit_rows": report.writes.get("audit_rows"),
                "io_floor_redis_commands": floor["redis"].get("commands"),
                "io_floor_redis_bytes": floor["redis"].get("bytes"),
                "io_floor_audit_rows": floor["audit_rows"],
                "dead_letters": report.dead_letters,
                "switched": report.switched,
                "verify_ok": verified,
                "verify_s": verify_s,
                **servers,
                "peak_rss_mb": rebuild_rss,
                "verify_peak_rss_mb": verify_rss,
                "peak_main_rss_mb": round(
                    resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                # The largest worker process (they run side by side).
                "peak_worker_rss_mb": round(
                    resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024),
            }
    finally:
        async with store:
            batch_keys: list[str] = []
            async for key in store.client.scan_iter(match=f"{prefix}*", count=5000):
                batch_keys.append(key)
                if len(batch_keys) >= 5000:
                    await store.client.unlink(*batch_keys)
                    batch_keys.clear()
            if batch_keys:
                await store.client.unlink(*batch_keys)
        await _drop_database(database)
        await _delete_topic(ep.kafka_bootstrap_servers, topic)
    return result


async def _delete_topic(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench rebuild")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=int(os.environ.get(
        "WDL_PARTITIONS", "8")))
    parser.add_argument("--batch", type=int, default=10_000)
    parser.add_argument("--no-verify", action="store_true")
    parser.add_argument("--no-servers-floor", action="store_true",
                        help="skip measuring the servers' own floor")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="rebuild worker processes (1: in-process)")
    args = parser.parse_args(argv)
    return asyncio.run(run(args.events, args.partitions, args.batch, not args.no_verify,
                           args.workers, not args.no_servers_floor))
