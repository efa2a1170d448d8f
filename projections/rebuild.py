"""Rebuild, verify and inspect projections (DESIGN invariants 1 and 5).

A rebuild replays the log from offset 0 into *new* generations of the
projection store and the audit store while the live projector and readers
keep using the current ones; it checks the shadow against an in-memory fold
of the same events, then switches each store's readers in one atomic step,
keeps applying for a grace period so the live projectors can follow, and
finally drops the old generations.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from eventlog.port import EventLog, Positions
from projections.audit_store import AuditStore
from projections.mirror import Expectation, Mirror, compare, live_items, replay
from projections.parallel import (
    Backends,
    ParallelRebuild,
    backends_of,
    kafka_settings_of,
    replay_parallel,
)
from projections.projector import Projector
from projections.store import ProjectionStore

Progress = Callable[[int], None]


class VerificationFailed(Exception):
    code = "verification_failed"

    def __init__(self, message: str, differences: list[str]) -> None:
        super().__init__(message)
        self.differences = differences


@dataclass
class RebuildReport:
    generation: int
    audit_generation: int | None
    positions: dict[int, int]
    events: int
    dead_letters: int
    digest: str
    audit_digest: str | None
    switched: bool
    seconds: float
    verify_seconds: float = 0.0
    dropped: list[int] = field(default_factory=list)
    # Redis commands and audit rows written (for benchmarks; not part of the report).
    writes: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "generation": self.generation, "audit_generation": self.audit_generation,
            "positions": {str(p): o for p, o in sorted(self.positions.items())},
            "events": self.events, "dead_letters": self.dead_letters, "digest": self.digest,
            "audit_digest": self.audit_digest, "switched": self.switched,
            "seconds": round(self.seconds, 3), "verify_seconds": round(self.verify_seconds, 3),
            "dropped_generations": self.dropped,
        }


async def positions_at_time(log: EventLog, until_ms: int) -> dict[int, int]:
    """Per partition, the first offset of an event that occurred after `until_ms`."""
    ends = await log.end_positions()
    out = dict(ends)
    async for batch in log.read_batches(None):
        for record in batch:
            p, o = record.position
            if o >= out[p]:
                continue
            occurred = (record.envelope.occurred_at if record.envelope is not None
                        else record.timestamp_ms)
            if occurred > until_ms:
                out[p] = o
    return out


async def rebuild(log: EventLog, store: ProjectionStore, audit: AuditStore | None, *,
                  until: Positions | None = None, switch: bool = True,
                  verify: bool = True, grace_s: float = 2.0, drop_old: bool = True,
                  progress: Progress | None = None, batch_size: int = 5000,
                  workers: int = 1) -> RebuildReport:
    """Replay into shadow generations, verify, switch (see the module docstring).

    `workers > 1` folds disjoint partition subsets in that many processes
    when the log and stores are servers they can reopen (Kafka, Redis,
    PostgreSQL); otherwise, and on a single partition, it runs in-process.
    The workers are spawned, so a script calling this needs the usual
    `if __name__ == "__main__":` guard (the CLI and `python -m` entry points have it).
    """
    started = time.perf_counter()
    before = _writes(store, audit, {})
    generation = await store.new_generation()
    audit_generation = await audit.new_generation() if audit is not None else None
    deferred = (await audit.defer_indexes(audit_generation)
                if audit is not None and audit_generation is not None else [])
    backends = backends_of(log, store, audit) if workers > 1 and log.partitions > 1 else None
    if backends is not None:
        return await _rebuild_parallel(
            log, store, audit, backends, workers=workers, generation=generation,
            audit_generation=audit_generation, until=until, switch=switch, verify=verify,
            grace_s=grace_s, drop_old=drop_old, progress=progress, batch_size=batch_size,
            started=started, deferred=deferred)
    mirror = Mirror() if verify else None
    if mirror is not None:
        await mirror.start()
    projector = Projector(log, store, audit, generation=generation,
                          audit_generation=audit_generation, batch_size=batch_size,
                          on_batch=mirror)
    positions = await projector.catch_up(until=until, progress=progress)
    if audit is not None and audit_generation is not None:
        await audit.restore_indexes(audit_generation, deferred)
    built = time.perf_counter()
    digest, audit_digest = await _verify(
        store, audit, generation, audit_generation,
        None if mirror is None else mirror.expected, positions)
    verified = time.perf_counter()
    switched = False
    dropped: list[int] = []
    if switch and until is None:
        switched = await _switch(lambda: projector.advance(progress=progress), store, audit,
                                 generation, audit_generation)
        if switched:
            # Keep applying while live projectors notice the switch and follow.
            deadline = time.monotonic() + grace_s
            while time.monotonic() < deadline:
                await projector.advance(progress=progress)
                await asyncio.sleep(0.05)
            if drop_old:
                dropped = await _drop_old(store, audit, generation, audit_generation)
    return RebuildReport(
        generation=generation, audit_generation=audit_generation,
        positions=projector.positions(), events=projector.events,
        dead_letters=projector.dead_letters, digest=digest, audit_digest=audit_digest,
        switched=switched, seconds=built - started, verify_seconds=verified - built,
        dropped=dropped, writes=_writes(store, audit, before),
    )


def _writes(store: ProjectionStore, audit: AuditStore | None,
            since: Mapping[str, int]) -> dict[str, int]:
    now = {**getattr(store, "written", {}),
           "audit_rows": 0 if audit is None else audit.written_rows}
    return {name: count - since.get(name, 0) for name, count in now.items()}


async def _rebuild_parallel(log: EventLog, store: ProjectionStore, audit: AuditStore | None,
                            backends: Backends, *, workers: int, generation: int,
                            audit_generation: int | None, until: Positions | None,
                            switch: bool, verify: bool, grace_s: float, drop_old: bool,
                            progress: Progress | None, batch_size: int,
                            started: float, deferred: list[str]) -> RebuildReport:
    follow = switch and until is None
    switched = False
    async with ParallelRebuild(backends, workers=workers, partitions=log.partitions,
                               generation=generation, audit_generation=audit_generation,
                               until=until, batch_size=batch_size, verify=verify,
                               follow=follow, progress=progress) as run:
        built_report = await run.built()
        if audit is not None and audit_generation is not None:
            await audit.restore_indexes(audit_generation, deferred)
        built = time.perf_counter()
        digest, audit_digest = await _verify(store, audit, generation, audit_generation,
                                             built_report.expected, built_report.positions)
        verified = time.perf_counter()
        run.go()
        if follow:
            # The workers keep applying new events; wait until the shadow is
            # not behind the live generation, then switch.
            switched = await _switch(lambda: asyncio.sleep(0.03), store, audit, generation,
                                     audit_generation, attempts=200)
            if switched:
                await asyncio.sleep(grace_s)
        final = await run.finish()
    dropped: list[int] = []
    if switched and drop_old:
        dropped = await _drop_old(store, audit, generation, audit_generation)
    return RebuildReport(
        generation=generation, audit_generation=audit_generation,
        positions=final.positions, events=final.events, dead_letters=final.dead_letters,
        digest=digest, audit_digest=audit_digest, switched=switched,
        seconds=built - started, verify_seconds=verified - built, dropped=dropped,
        writes=final.writes,
    )


async def _verify(store: ProjectionStore, audit: AuditStore | None, generation: int,
                  audit_generation: int | None, expected: Expectation | None,
                  positions: Mapping[int, int]) -> tuple[str, str | None]:
    """Stream the shadow through the expectation (one read of each store, concurrently)."""
    if expected is None:
        return "", None  # not verified: the digests are not worth a full read-back
    audit_read = (asyncio.ensure_future(audit.digest(audit_generation))
                  if audit is not None and audit_generation is not None else None)
    try:
        found = await compare(live_items(store, generation), expected.finish())
        audit_digest = await audit_read if audit_read is not None else None
    finally:
        if audit_read is not None and not audit_read.done():
            audit_read.cancel()
    if not found.ok:
        raise VerificationFailed("the shadow generation differs from the fold",
                                 found.differences)
    if audit_digest is not None:
        expected.audit.positions(positions)
        if expected.audit.hexdigest() != audit_digest:
            raise VerificationFailed("the shadow audit tables differ from the fold", [])
    return found.digest, audit_digest


async def _switch(advance: Callable[[], Awaitable[object]], store: ProjectionStore,
                  audit: AuditStore | None, generation: int, audit_generation: int | None,
                  attempts: int = 50) -> bool:
    redis_done = audit_done = False
    for _ in range(attempts):
        await advance()
        if not redis_done:
            live = await store.current_generation()
            redis_done = await store.switch(generation, not_behind=live)
        if audit is not None and audit_generation is not None and not audit_done:
            live_a = await audit.current_generation()
            audit_done = await audit.switch(audit_generation, not_behind=live_a)
        if redis_done and (audit is None or audit_done):
            return True
        await asyncio.sleep(0.02)
    return False


async def _drop_old(store: ProjectionStore, audit: AuditStore | None, generation: int,
                    audit_generation: int | None) -> list[int]:
    dropped: list[int] = []
    for gen in await store.generations():
        if gen != generation and gen != await store.current_generation():
            await store.drop_generation(gen)
            dropped.append(gen)
    if audit is not None:
        current = await audit.current_generation()
        for gen in await audit.generations():
            if gen not in (audit_generation, current):
                await audit.drop_generation(gen)
    return dropped


@dataclass
class VerifyReport:
    ok: bool
    generation: int
    positions: dict[int, int]
    digest: str
    expected_digest: str
    differences: list[str]
    audit_ok: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "generation": self.generation,
                "positions": {str(p): o for p, o in sorted(self.positions.items())},
                "digest": self.digest, "expected_digest": self.expected_digest,
                "differences": self.differences, "audit_ok": self.audit_ok}


async def verify_live(log: EventLog, store: ProjectionStore, audit: AuditStore | None = None,
                      *, attempts: int = 5, progress: Progress | None = None,
                      workers: int = 1, batch_size: int = 5000) -> VerifyReport:
    """Compare the live projections with a fresh replay up to the same positions.

    One fold of the log gives the expectation of both stores (a hash per
    field, the audit digest's chains); the live generation is then streamed
    through it once. The audit tables are read back meanwhile, from one
    snapshot. `workers > 1` folds partition subsets in that many processes
    when the log is Kafka (see parallel.py).
    """
    for _ in range(attempts):
        generation = await store.current_generation()
        positions = await store.applied(generation)
        audit_generation = audit_positions = None
        audit_read: asyncio.Future[tuple[dict[int, int], str]] | None = None
        if audit is not None:
            audit_generation = await audit.current_generation()
            audit_positions = await audit.applied(audit_generation)
            audit_read = asyncio.ensure_future(audit.snapshot_digest(audit_generation))
        try:
            expected = await _replay(log, _until(log, positions),
                                     None if audit_positions is None
                                     else _until(log, audit_positions),
                                     workers=workers, batch_size=batch_size,
                                     progress=progress)
            found = await compare(live_items(store, generation), expected.finish())
            if await store.applied(generation) != positions:
                continue  # the live projector moved on while we read; try again
            report = VerifyReport(found.ok, generation, positions, found.digest,
                                  found.expected_digest, found.differences)
            if audit_read is not None and audit_positions is not None:
                read_at, live_audit = await audit_read
                if read_at != audit_positions:
                    continue  # the audit projector moved before the snapshot
                expected.audit.positions(audit_positions)
                report.audit_ok = expected.audit.hexdigest() == live_audit
                report.ok = report.ok and report.audit_ok
            return report
        finally:
            if audit_read is not None and not audit_read.done():
                audit_read.cancel()
                with contextlib.suppress(BaseException):
                    await audit_read
    raise RuntimeError("the projection kept moving; verify on a quieter system")


async def _replay(log: EventLog, redis_until: dict[int, int],
                  audit_until: dict[int, int] | None, *, workers: int, batch_size: int,
                  progress: Progress | None) -> Expectation:
    if workers > 1 and log.partitions > 1:
        kafka = kafka_settings_of(log)
        if kafka is not None:
            return await replay_parallel(kafka, workers=workers, partitions=log.partitions,
                                         redis_until=redis_until, audit_until=audit_until,
                                         batch_size=batch_size, progress=progress)
    return await replay(log, redis_until, audit_until, batch_size=batch_size,
                        progress=progress)


def _until(log: EventLog, positions: Mapping[int, int]) -> dict[int, int]:
    return {p: positions.get(p, 0) for p in range(log.partitions)}


async def status(log: EventLog, store: ProjectionStore,
                 audit: AuditStore | None = None) -> list[dict[str, Any]]:
    """Per projection and partition: applied position, log end and lag."""
    ends = await log.end_positions()
    rows: list[dict[str, Any]] = []
    targets: list[tuple[str, Any]] = [("redis", store)]
    if audit is not None:
        targets.append(("audit", audit))
    for name, target in targets:
        generation = await target.current_generation()
        applied = await target.applied(generation)
        for partition in sorted(ends):
            end = ends[partition]
            at = applied.get(partition, 0)
            rows.append({"projection": name, "generation": generation,
                         "partition": partition, "applied": at, "log_end": end,
                         "lag": max(0, end - at)})
    return rows

