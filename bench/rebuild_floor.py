"""The I/O floor of `bench rebuild`: a rebuild's reads and writes without its fold.

The same records are consumed from Kafka and decoded (the log's own reader),
by the same number of processes owning the same partitions, and written
through the same stores (`RedisProjectionStore.apply`, `AuditStore.apply`:
compare-and-set, MULTI/EXEC, COPY; the same deferred and rebuilt indexes)
into fresh generations, batch by batch, while the next batch is read:

- PostgreSQL: exactly the rows the fold would give: one audit row per event
  (columns taken from the envelope, the payload encoded as JSON), a
  deployment or lease history row for the events that have one;
- Redis: the real rebuild's totals of commands, arguments and bytes
  (`RebuildReport.writes`), spread over the events in proportion, as HSETs
  of values of the real average size.

No process can project the log faster than it reads it and writes this, so
`events_per_s / io_floor_events_per_s` is how much of the I/O the fold leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue as queue_mod
import time
import traceback
from dataclasses import dataclass
from typing import Any

import msgspec

from eventlog import events as ev
from eventlog.kafka import KafkaEventLog, KafkaSettings
from eventlog.port import Record
from projections.audit_store import AuditStore
from projections.changes import Changes
from projections.redis_store import RedisProjectionStore
from projections.store import StalePosition

_json = msgspec.json.Encoder(order="sorted")
_DEPLOYMENT = (ev.WorkerVersionUploaded, ev.VersionPromoted, ev.WorkerRolledBack,
               ev.VersionDeleted, ev.WorkerDeleted, ev.WorkerPurged)
_LEASE = (ev.LeaseAcquired, ev.LeaseRenewed, ev.LeaseReleased, ev.LeaseTakenOver)


@dataclass(frozen=True, slots=True)
class FloorJob:
    index: int
    kafka: KafkaSettings
    redis_url: str
    redis_prefix: str
    audit_url: str
    generation: int
    audit_generation: int
    partitions: tuple[int, ...]
    batch_size: int
    # Per event, what the real rebuild wrote to Redis (totals / events).
    commands_per_event: float
    arguments_per_command: float
    bytes_per_event: float


class _Quota:
    """Hands out a per-event rate as whole units, exactly on total."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.events = 0
        self.given = 0

    def take(self, events: int) -> int:
        self.events += events
        due = round(self.rate * self.events) - self.given
        self.given += due
        return due


def _rows(record: Record, out: Changes) -> None:
    partition, offset = record.position
    out.positions[partition] = offset + 1
    env = record.envelope
    if env is None:
        out.dead_letters.append({
            "log_partition": partition, "log_offset": offset, "raw": record.raw,
            "reason": "undecodable", "code": "undecodable",
            "log_timestamp_ms": record.timestamp_ms})
        return
    payload = env.payload
    namespace = getattr(payload, "namespace", None)
    out.audit.append({
        "log_partition": partition, "log_offset": offset, "event_id": env.event_id,
        "event_type": env.type, "schema_version": env.schema_version,
        "aggregate_kind": str(env.aggregate_kind), "aggregate_id": env.aggregate_id,
        "namespace": namespace, "worker": getattr(payload, "worker", None),
        "actor": env.actor, "accepted": True, "reason_code": None, "reason": None,
        "aggregate_version": offset, "occurred_at_ms": env.occurred_at,
        "idempotency_key": env.idempotency_key, "correlation_id": env.correlation_id,
        "payload": _json.encode(payload).decode()})
    if isinstance(payload, _DEPLOYMENT):
        out.deployments.append({
            "log_partition": partition, "log_offset": offset, "namespace": namespace,
            "worker": payload.worker, "action": env.type.removeprefix("worker."),
            "version_id": getattr(payload, "version_id", None), "actor": env.actor,
            "accepted": True, "reason_code": None, "occurred_at_ms": env.occurred_at})
    elif isinstance(payload, _LEASE):
        out.lease_history.append({
            "log_partition": partition, "log_offset": offset, "scope": payload.scope,
            "action": env.type.removeprefix("lease."), "holder": payload.holder,
            "generation": payload.generation,
            "expires_at_ms": getattr(payload, "expires_at", None), "actor": env.actor,
            "accepted": True, "reason_code": None, "occurred_at_ms": env.occurred_at})


async def _floor(job: FloorJob, out: Any) -> None:
    audit_cm = AuditStore(job.audit_url, migrate=False)
    async with (KafkaEventLog(job.kafka) as log,
                RedisProjectionStore(job.redis_url, prefix=job.redis_prefix) as store,
                audit_cm as audit):
        applied: dict[int, int] = {}
        audit_applied: dict[int, int] = {}
        # Two commands of every transaction are the positions and the change message.
        commands = _Quota(job.commands_per_event)
        # An HSET's arguments: its key, then a name and a value per field.
        per_command = max(1, round((job.arguments_per_command - 1) / 2))
        target = 0.0  # bytes the real rebuild wrote for the events written so far
        last_batch = 0.0
        counter = 0
        pending: asyncio.Future[Any] | None = None
        events = 0
        batches = log.read_batches(dict.fromkeys(job.partitions, 0), max_batch=job.batch_size)
        async for records in batches:
            # One transaction per batch for all its partitions, as the projector writes.
            changes = Changes()
            for record in records:
                _rows(record, changes)
            n = max(0, commands.take(len(records)) - 2)
            # Values sized so that the bytes sent match the real rebuild's: this
            # batch's share, corrected by how far the batches written so far missed.
            batch_bytes = job.bytes_per_event * len(records)
            in_flight = last_batch if pending is not None and not pending.done() else 0.0
            missed = target - in_flight - store.written["bytes"] if target else 0.0
            target += batch_bytes
            last_batch = batch_bytes
            per_field = ((batch_bytes + missed - 250 - 40 * n) / max(1, n * per_command)
                         - len(f"{counter + n}.0") - 12)
            value = "x" * max(1, round(per_field))
            for _ in range(n):
                counter += 1
                fields = changes.fields.setdefault(f"floor:{counter % 32768}", {})
                for j in range(per_command):
                    fields[f"{counter}.{j}"] = value
            if pending is not None:
                await pending
            pending = asyncio.ensure_future(_write(store, audit, job, changes, applied,
                                                   audit_applied))
            events += len(records)
            out.put(("progress", job.index, len(records)))
        if pending is not None:
            await pending
        out.put(("done", job.index, {"events": events, "redis": dict(store.written),
                                     "audit_rows": audit.written_rows}))


async def _write(store: RedisProjectionStore, audit: AuditStore, job: FloorJob,
                 changes: Changes, applied: dict[int, int],
                 audit_applied: dict[int, int]) -> None:
    await asyncio.gather(_apply(store, job.generation, changes, applied),
                         _apply(audit, job.audit_generation, changes, audit_applied))


async def _apply(store: RedisProjectionStore | AuditStore, generation: int, changes: Changes,
                 applied: dict[int, int]) -> None:
    expected = {p: applied.get(p, 0) for p in changes.positions}
    for _ in range(50):
        try:
            await store.apply(generation, changes, expected)
            break
        except StalePosition:
            # Another worker wrote its partitions' positions into the shared
            # hash meanwhile (WATCH); ours are unchanged, so write again, as
            # the projector does.
            continue
    else:
        raise StalePosition("gave up after 50 lost races")
    applied.update(changes.positions)


def _main(job: FloorJob, out: Any) -> None:
    try:
        asyncio.run(_floor(job, out))
    except BaseException:
        out.put(("error", job.index, traceback.format_exc()))
        raise


async def io_floor(kafka: KafkaSettings, store: RedisProjectionStore, audit: AuditStore, *,
                   partitions: int, workers: int, batch_size: int, events: int,
                   writes: dict[str, int]) -> dict[str, Any]:
    """Run the floor into new generations of `store` and `audit`; its seconds and writes."""
    started = time.perf_counter()
    generation = await store.new_generation()
    audit_generation = await audit.new_generation()
    deferred = await audit.defer_indexes(audit_generation)
    transactions = max(1, writes.get("transactions", 1))
    cmds = max(0, writes.get("commands", 0))
    args = max(1, writes.get("arguments", 1))
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    owned = [tuple(p for p in range(partitions) if p % workers == i)
             for i in range(min(workers, partitions))]
    jobs = [FloorJob(i, kafka, store.url, store.prefix, audit.url, generation,
                     audit_generation, parts, batch_size,
                     commands_per_event=cmds / max(1, events),
                     arguments_per_command=((args - 2 * transactions)
                                            / max(1, cmds - 2 * transactions)),
                     bytes_per_event=writes.get("bytes", 0) / max(1, events))
            for i, parts in enumerate(owned)]
    procs = [ctx.Process(target=_main, args=(job, out), daemon=True) for job in jobs]
    for proc in procs:
        proc.start()
    loop = asyncio.get_running_loop()
    done: dict[int, dict[str, Any]] = {}
    try:
        while len(done) < len(procs):
            try:
                what, index, body = await loop.run_in_executor(None, out.get, True, 0.5)
            except queue_mod.Empty:
                if any(not p.is_alive() and i not in done for i, p in enumerate(procs)):
                    raise RuntimeError("an I/O floor worker died") from None
                continue
            if what == "error":
                raise RuntimeError(f"I/O floor worker {index} failed:\n{body}")
            if what == "done":
                done[index] = body
    finally:
        for proc in procs:
            if proc.is_alive() and len(done) < len(procs):
                proc.terminate()
            await loop.run_in_executor(None, proc.join, 10.0)
        out.close()
    await audit.restore_indexes(audit_generation, deferred)
    seconds = time.perf_counter() - started
    redis: dict[str, int] = {}
    for body in done.values():
        for name, count in body["redis"].items():
            redis[name] = redis.get(name, 0) + count
    with contextlib.suppress(Exception):
        await store.drop_generation(generation)
    return {"seconds": seconds, "events": sum(b["events"] for b in done.values()),
            "redis": redis, "audit_rows": sum(b["audit_rows"] for b in done.values())}


class RssSampler:
    """Peak resident memory of this process and all its descendants, summed, per phase.

    getrusage gives each process's own peak, at different moments; what a
    machine must hold is the largest sum at one moment, so /proc is sampled.
    """

    def __init__(self, interval: float = 0.05) -> None:
        import threading

        self._interval = interval
        self._peak = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    async def __aenter__(self) -> RssSampler:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__()

    def phase(self) -> int:
        """The peak (MiB) since the previous call, and start a new phase."""
        self._sample()
        with self._lock:
            peak, self._peak = self._peak, 0
        return round(peak / 2**20)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        import os

        total = 0
        todo = [os.getpid()]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError, ValueError):
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
                with open(f"/proc/{pid}/task/{pid}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        with self._lock:
            self._peak = max(self._peak, total)
