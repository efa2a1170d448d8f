"""Append throughput and latency of KafkaEventLog against a bare aiokafka producer.

Both sides use the same producer settings (idempotent, acks=all, linger 0),
the same partitions and keys, the same payload bytes and the same batching
and concurrency. The event log side also validates, encodes and places every
envelope, which is the overhead this measures.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer

from eventlog import (
    Binding,
    Envelope,
    Event,
    HostClaimed,
    KafkaEventLog,
    KafkaSettings,
    LeaseRenewed,
    ModuleRef,
    SealedSecret,
    SecretPut,
    TokenIssued,
    VersionPromoted,
    WorkerVersionUploaded,
)
from eventlog.port import PreparedEvent


def _bootstrap() -> str:
    found = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if found:
        return found
    from harness.endpoints import load

    servers = load().kafka_bootstrap_servers
    if not servers:
        sys.exit("KAFKA_BOOTSTRAP_SERVERS is not set (run `make services` first)")
    return servers


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def realistic_events(count: int, namespaces: int, seed: int = 7) -> list[Envelope]:
    """A deploy-heavy control-plane day: leases tick, tenants upload and promote."""
    rng = random.Random(seed)
    generation: dict[str, int] = {}
    out: list[Envelope] = []
    crons = ("*/5 * * * *", "0 * * * *", "30 2 * * *", "0 9 * * mon-fri")
    for n in range(count):
        ns = f"tenant-{rng.randrange(namespaces):04d}"
        worker = f"svc-{rng.randrange(12)}"
        roll = rng.random()
        pre: dict[str, int | None] = {"expected_version": None, "expected_generation": None}
        event: Event
        if roll < 0.25:
            modules = tuple(
                ModuleRef(name=f"m{i}.js", type="esm", sha256=_hex(ns, worker, n, i), size=900)
                for i in range(rng.randint(1, 6))
            )
            event = WorkerVersionUploaded(
                namespace=ns,
                worker=worker,
                version_id=str(uuid.UUID(int=rng.getrandbits(128))),
                bundle_sha256=_hex(ns, worker, n),
                bundle_size=sum(m.size for m in modules),
                modules=modules,
                main_module="m0.js",
                compatibility_date="2025-09-01",
                compatibility_flags=("nodejs_compat",),
                vars={"ENV": "prod", "REGION": "eu-west"},
                bindings=(Binding(name="AUTH", kind="service", target="auth"),),
                cron_triggers=(rng.choice(crons),) if rng.random() < 0.3 else (),
            )
            pre["expected_version"] = rng.randrange(50)
        elif roll < 0.45:
            event = VersionPromoted(namespace=ns, worker=worker, version_id=f"v-{n}")
            pre["expected_version"] = rng.randrange(50)
        elif roll < 0.60:
            event = SecretPut(
                namespace=ns,
                worker=worker if rng.random() < 0.7 else None,
                name=f"SECRET_{rng.randrange(20)}",
                sealed=SealedSecret(
                    key_id="root-2026-01",
                    wrapped_key=rng.randbytes(40),
                    nonce=rng.randbytes(12),
                    ciphertext=rng.randbytes(rng.randint(16, 256)),
                ),
            )
        elif roll < 0.70:
            event = HostClaimed(pattern=f"{worker}.{ns}.example.com", namespace=ns)
        elif roll < 0.97:
            scope = f"cron/{ns}"
            gen = generation.setdefault(scope, rng.randint(1, 9))
            event = LeaseRenewed(
                scope=scope,
                holder=f"scheduler-{gen % 3}",
                generation=gen,
                ttl_ms=15_000,
                expires_at=1_767_225_600_000 + n * 10,
            )
            pre["expected_generation"] = gen
        else:
            event = TokenIssued(
                token_id=f"tok_{n}",
                token_sha256=rng.randbytes(32),
                role="deployer",
                namespaces=(ns,),
            )
        out.append(
            Envelope.new(
                event,
                actor="bench",
                expected_version=pre["expected_version"],
                expected_generation=pre["expected_generation"],
            )
        )
    return out


def _chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


async def _through_log(
    log: KafkaEventLog, envelopes: list[Envelope], chunk: int, conc: int
) -> float:
    chunks = _chunks(envelopes, chunk)
    sem = asyncio.Semaphore(conc)

    async def one(part: Sequence[Envelope]) -> None:
        async with sem:
            await log.append_many(part)

    began = time.perf_counter()
    await asyncio.gather(*(one(part) for part in chunks))
    return time.perf_counter() - began


async def _through_bare(
    producer: AIOKafkaProducer, topic: str, prepared: list[PreparedEvent], chunk: int, conc: int
) -> float:
    chunks = _chunks(prepared, chunk)
    sem = asyncio.Semaphore(conc)

    async def one(part: Sequence[PreparedEvent]) -> None:
        async with sem:
            futures = [
                await producer.send(topic, value=p.raw, key=p.key.encode(), partition=p.partition)
                for p in part
            ]
            for future in futures:
                await future

    began = time.perf_counter()
    await asyncio.gather(*(one(part) for part in chunks))
    return time.perf_counter() - began


def _percentile(sorted_values: list[float], q: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]


async def run(args: argparse.Namespace) -> dict[str, Any]:
    bootstrap = _bootstrap()
    run_id = uuid.uuid4().hex[:8]
    settings = KafkaSettings(
        bootstrap, topic=f"bench-eventlog-{run_id}", partitions=args.partitions
    )
    envelopes = realistic_events(args.events, args.namespaces)
    warmup = realistic_events(args.warmup, args.namespaces, seed=11)
    latency_events = realistic_events(args.latency_samples, args.namespaces, seed=13)

    async with KafkaEventLog(settings) as log:
        prepared = [log.prepare(e) for e in envelopes]
        warm_prepared = [log.prepare(e) for e in warmup]
        payload_bytes = sum(len(p.raw) for p in prepared)
        bare_topic = f"bench-bare-{run_id}"
        # Same topic settings for the baseline: let the adapter create it.
        async with KafkaEventLog(
            KafkaSettings(bootstrap, topic=bare_topic, partitions=args.partitions)
        ):
            pass
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=settings.linger_ms,
            request_timeout_ms=settings.request_timeout_ms,
            max_request_size=settings.max_event_bytes + 64 * 1024,
        )
        await producer.start()
        try:
            await _through_log(log, warmup, args.chunk, args.concurrency)
            await _through_bare(producer, bare_topic, warm_prepared, args.chunk, args.concurrency)
            log_runs: list[float] = []
            bare_runs: list[float] = []
            # Interleaved rounds so drift on the machine hits both sides alike.
            for _ in range(args.rounds):
                log_runs.append(
                    await _through_log(log, envelopes, args.chunk, args.concurrency)
                )
                bare_runs.append(
                    await _through_bare(
                        producer, bare_topic, prepared, args.chunk, args.concurrency
                    )
                )
            log_lat: list[float] = []
            bare_lat: list[float] = []
            for env, raw in zip(
                latency_events, (log.prepare(e) for e in latency_events), strict=True
            ):
                began = time.perf_counter()
                await log.append(env)
                log_lat.append((time.perf_counter() - began) * 1000)
                began = time.perf_counter()
                await (
                    await producer.send(
                        bare_topic, value=raw.raw, key=raw.key.encode(), partition=raw.partition
                    )
                )
                bare_lat.append((time.perf_counter() - began) * 1000)
        finally:
            await producer.stop()

    log_s = statistics.median(log_runs)
    bare_s = statistics.median(bare_runs)
    log_lat.sort()
    bare_lat.sort()
    events_per_s = args.events / log_s
    baseline = args.events / bare_s
    return {
        "bench": "eventlog",
        "events": args.events,
        "rounds": args.rounds,
        "partitions": args.partitions,
        "chunk": args.chunk,
        "concurrency": args.concurrency,
        "avg_event_bytes": round(payload_bytes / args.events),
        "events_per_s": round(events_per_s),
        "baseline_events_per_s": round(baseline),
        "ratio": round(events_per_s / baseline, 3),
        "events_per_s_runs": [round(args.events / s) for s in log_runs],
        "baseline_events_per_s_runs": [round(args.events / s) for s in bare_runs],
        "append_p50_ms": round(_percentile(log_lat, 0.50), 3),
        "append_p99_ms": round(_percentile(log_lat, 0.99), 3),
        "append_max_ms": round(log_lat[-1], 3),
        "baseline_append_p50_ms": round(_percentile(bare_lat, 0.50), 3),
        "baseline_append_p99_ms": round(_percentile(bare_lat, 0.99), 3),
        "latency_samples": len(log_lat),
    }


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench eventlog")
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--namespaces", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--chunk", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5_000)
    parser.add_argument("--latency-samples", type=int, default=2_000)
    return asyncio.run(run(parser.parse_args(argv)))
