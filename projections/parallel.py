"""A rebuild spread over worker processes, each folding a subset of the partitions.

One Python process tops out well below what Kafka, Redis and PostgreSQL
take: reading, decoding, folding and formatting the writes all hold the GIL.
The fold never looks across partitions (see projections/fold/core.py) and both
stores compare-and-set their applied positions per partition, so workers
that own disjoint partitions can fold and write the same shadow generation
concurrently with exactly the guarantees of a single projector.

Each worker reopens the log and the stores from a picklable spec (spawned,
not forked: the parent has live sockets and an event loop), folds its
partitions up to `until`, reports (positions, counts, and for verification
its in-memory expectation), then keeps advancing its partitions until the
parent has switched readers and says stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import queue as queue_mod
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.context import SpawnProcess
from typing import Any

from eventlog.codec import DEFAULT_CODEC
from eventlog.kafka import KafkaEventLog, KafkaSettings
from eventlog.port import EventLog, Positions
from projections.audit_store import AuditStore
from projections.mirror import Expectation, Hashes
from projections.redis_store import RedisProjectionStore
from projections.store import ProjectionStore

Progress = Callable[[int], None]


@dataclass(frozen=True, slots=True)
class Backends:
    """How a worker process reopens the parent's log and stores."""

    kafka: KafkaSettings
    redis_url: str
    redis_prefix: str
    audit_url: str | None


def backends_of(log: EventLog, store: ProjectionStore,
                audit: AuditStore | None) -> Backends | None:
    """A spec when every backend is a shared server another process can open, else None.

    The embedded log and in-memory store live in this process only; a
    rebuild on them stays in one process.
    """
    if not isinstance(log, KafkaEventLog) or log.codec is not DEFAULT_CODEC:
        return None
    if not isinstance(store, RedisProjectionStore):
        return None
    if audit is not None and not audit.is_postgres:
        return None  # SQLite serialises writers anyway
    return Backends(log.settings, store.url, store.prefix,
                    audit.url if audit is not None else None)


@dataclass(frozen=True, slots=True)
class _Job:
    index: int
    backends: Backends
    generation: int
    audit_generation: int | None
    partitions: tuple[int, ...]
    until: dict[int, int] | None
    batch_size: int
    verify: bool
    follow: bool


@dataclass
class Built:
    """What the workers report once they reached `until` (or the log end)."""

    positions: dict[int, int] = field(default_factory=dict)
    events: int = 0
    dead_letters: int = 0
    expected: Expectation | None = None  # merged expectations of every worker (verify)
    writes: dict[str, int] = field(default_factory=dict)  # summed store.written of the workers


def _worker_main(job: _Job, out: Any, go: Any, stop: Any) -> None:
    try:
        asyncio.run(_worker(job, out, go, stop))
    except BaseException:
        out.put(("error", job.index, traceback.format_exc()))
        raise


async def _worker(job: _Job, out: Any, go: Any, stop: Any) -> None:
    from projections.mirror import Mirror
    from projections.projector import Projector

    b = job.backends
    audit_cm: Any = (AuditStore(b.audit_url, migrate=False) if b.audit_url is not None
                     else contextlib.nullcontext(None))
    async with (KafkaEventLog(b.kafka) as log,
                RedisProjectionStore(b.redis_url, prefix=b.redis_prefix) as store,
                audit_cm as audit):
        mirror = Mirror() if job.verify else None
        if mirror is not None:
            await mirror.start()
        projector = Projector(log, store, audit, generation=job.generation,
                              audit_generation=job.audit_generation,
                              batch_size=job.batch_size, on_batch=mirror)

        def progress(n: int) -> None:
            out.put(("progress", job.index, n))

        positions = await projector.catch_up(until=job.until, progress=progress,
                                             partitions=job.partitions)
        report: dict[str, Any] = {"positions": positions, "events": projector.events,
                                  "dead_letters": projector.dead_letters}
        if mirror is not None:
            report["expected"] = mirror.expected.finish()
            report["chains"] = mirror.audit.export_chains()
            mirror = None  # sent: the parent holds the merged expectation
        out.put(("built", job.index, report))
        # Hold still while the parent reads the shadow back to verify it.
        while job.follow and not go.is_set() and not stop.is_set():
            await asyncio.sleep(0.02)
        while job.follow and not stop.is_set():
            await projector.advance(progress=progress, partitions=job.partitions)
            await asyncio.sleep(0.05)
        out.put(("done", job.index, {"positions": projector.positions(),
                                     "events": projector.events,
                                     "dead_letters": projector.dead_letters,
                                     "writes": _writes(store, audit)}))


class WorkerFailed(RuntimeError):
    pass


def _writes(store: RedisProjectionStore, audit: AuditStore | None) -> dict[str, int]:
    return {**store.written, "audit_rows": 0 if audit is None else audit.written_rows}


class ParallelRebuild:
    """Runs the workers of one rebuild; use `async with`, then `built()` and `finish()`."""

    def __init__(self, backends: Backends, *, workers: int, partitions: int, generation: int,
                 audit_generation: int | None, until: Positions | None, batch_size: int,
                 verify: bool, follow: bool, progress: Progress | None) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._queue: Any = ctx.Queue()
        self._go = ctx.Event()
        self._stop = ctx.Event()
        self._progress = progress
        owned = [tuple(p for p in range(partitions) if p % workers == i)
                 for i in range(min(workers, partitions))]
        self._jobs = [
            _Job(i, backends, generation, audit_generation, parts,
                 None if until is None else {p: until.get(p, 0) for p in parts},
                 batch_size, verify, follow)
            for i, parts in enumerate(owned)
        ]
        self._procs: list[SpawnProcess] = [
            ctx.Process(target=_worker_main, args=(job, self._queue, self._go, self._stop),
                        name=f"wdl-rebuild-{job.index}", daemon=True)
            for job in self._jobs
        ]
        self._reports: dict[str, dict[int, dict[str, Any]]] = {"built": {}, "done": {}}

    async def __aenter__(self) -> ParallelRebuild:
        for proc in self._procs:
            proc.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        self._stop.set()
        loop = asyncio.get_running_loop()
        for proc in self._procs:
            if exc_type is not None:
                # Failed or cancelled: a worker mid-fold would not look at the
                # stop flag soon. Killing it is safe, its writes are atomic.
                proc.terminate()
            await loop.run_in_executor(None, proc.join, 10.0)
            if proc.is_alive():
                proc.kill()
                await loop.run_in_executor(None, proc.join, 5.0)
        self._queue.close()

    async def _until(self, kind: str) -> dict[int, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        reports = self._reports[kind]
        while len(reports) < len(self._jobs):
            try:
                message = await loop.run_in_executor(None, self._queue.get, True, 0.5)
            except queue_mod.Empty:
                dead = [p for p, j in zip(self._procs, self._jobs, strict=True)
                        if not p.is_alive() and j.index not in reports]
                if dead:
                    raise WorkerFailed(f"{dead[0].name} exited with {dead[0].exitcode} "
                                       "without reporting") from None
                continue
            what, index, body = message
            if what == "progress":
                if self._progress is not None:
                    self._progress(body)
            elif what == "error":
                raise WorkerFailed(f"rebuild worker {index} failed:\n{body}")
            else:
                self._reports[what][index] = body
        return reports

    async def built(self) -> Built:
        """Wait until every worker has folded its partitions up to `until`."""
        reports = await self._until("built")
        out = Built()
        for report in reports.values():
            out.positions.update(report["positions"])
            out.events += report["events"]
            out.dead_letters += report["dead_letters"]
        if all("expected" in r for r in reports.values()):
            out.expected = _merge([(r.pop("expected"), r.pop("chains"))
                                   for r in reports.values()])
        return out

    def go(self) -> None:
        """Let the workers follow the log again (after verification)."""
        self._go.set()

    async def finish(self) -> Built:
        """Tell the workers to stop advancing; their final positions and counts."""
        self._stop.set()
        reports = await self._until("done")
        out = Built()
        for report in reports.values():
            out.positions.update(report["positions"])
            out.events += report["events"]
            out.dead_letters += report["dead_letters"]
            for name, count in report["writes"].items():
                out.writes[name] = out.writes.get(name, 0) + count
        return out


def _merge(parts: Iterable[tuple[Hashes, dict[tuple[str, int], bytes]]]) -> Expectation:
    out = Expectation()
    for hashes, chains in parts:
        out.merge(hashes)
        out.audit.import_chains(chains)
    return out


def kafka_settings_of(log: EventLog) -> KafkaSettings | None:
    """How a worker process reopens the log, when it can (Kafka, default codec)."""
    if not isinstance(log, KafkaEventLog) or log.codec is not DEFAULT_CODEC:
        return None
    return log.settings


def _replay_main(index: int, kafka: KafkaSettings, partitions: tuple[int, ...],
                 redis_until: dict[int, int], audit_until: dict[int, int] | None,
                 batch_size: int, out: Any) -> None:
    try:
        asyncio.run(_replay_worker(index, kafka, partitions, redis_until, audit_until,
                                   batch_size, out))
    except BaseException:
        out.put(("error", index, traceback.format_exc()))
        raise


async def _replay_worker(index: int, kafka: KafkaSettings, partitions: tuple[int, ...],
                         redis_until: dict[int, int], audit_until: dict[int, int] | None,
                         batch_size: int, out: Any) -> None:
    from projections.mirror import replay

    def progress(n: int) -> None:
        out.put(("progress", index, n))

    async with KafkaEventLog(kafka) as log:
        expected = await replay(log, redis_until, audit_until, partitions=partitions,
                                batch_size=batch_size, progress=progress)
    out.put(("built", index, (expected.finish(), expected.audit.export_chains())))


async def replay_parallel(kafka: KafkaSettings, *, workers: int, partitions: int,
                          redis_until: dict[int, int], audit_until: dict[int, int] | None,
                          batch_size: int, progress: Progress | None) -> Expectation:
    """`mirror.replay` over disjoint partition subsets in `workers` spawned processes."""
    ctx = multiprocessing.get_context("spawn")
    out: Any = ctx.Queue()
    owned = [tuple(p for p in range(partitions) if p % workers == i)
             for i in range(min(workers, partitions))]
    procs = [ctx.Process(target=_replay_main,
                         args=(i, kafka, parts, {p: redis_until.get(p, 0) for p in parts},
                               None if audit_until is None
                               else {p: audit_until.get(p, 0) for p in parts},
                               batch_size, out),
                         name=f"wdl-verify-{i}", daemon=True)
             for i, parts in enumerate(owned)]
    for proc in procs:
        proc.start()
    loop = asyncio.get_running_loop()
    results: dict[int, tuple[Hashes, dict[tuple[str, int], bytes]]] = {}
    try:
        while len(results) < len(procs):
            try:
                what, index, body = await loop.run_in_executor(None, out.get, True, 0.5)
            except queue_mod.Empty:
                dead = [p for i, p in enumerate(procs) if not p.is_alive() and i not in results]
                if dead:
                    raise WorkerFailed(f"{dead[0].name} exited with {dead[0].exitcode} "
                                       "without reporting") from None
                continue
            if what == "progress":
                if progress is not None:
                    progress(body)
            elif what == "error":
                raise WorkerFailed(f"verify worker {index} failed:\n{body}")
            else:
                results[index] = body
    finally:
        for proc in procs:
            if proc.is_alive() and len(results) < len(procs):
                proc.terminate()
            await loop.run_in_executor(None, proc.join, 10.0)
            if proc.is_alive():
                proc.kill()
        out.close()
    return _merge(results.pop(i) for i in sorted(results))
