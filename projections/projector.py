"""The projector: folds the log into the projection stores, exactly once.

The fold's state lives in memory and is a pure function of the log prefix,
so the projector always starts folding at offset 0 and *writes* only what a
store has not applied yet. For each partition and store, with the batch
covering offsets [S, E) and the store's applied position Q:

- Q >= E: the store already has these effects; skip.
- S <= Q < E: write. Effects are level-triggered values as of E, so fields
  touched before Q are rewritten with their (unchanged) current values.
- Q < S: the store lost effects this batch cannot reproduce (someone dropped
  data under us); restart the fold from offset 0.

Every write is a compare-and-set on Q; losing it to another replica means
re-reading Q and deciding again. Generations are followed: when a rebuild
switches the current generation, the next batch goes to the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from eventlog.port import EventLog, Positions, Record
from projections.changes import Changes
from projections.fold import Fold, PartitionBatch
from projections.metrics import ProjectorMetrics
from projections.store import GenerationMissing, StalePosition

log = logging.getLogger("wdl.projector")


class Target(Protocol):
    """What the projector needs of a store (ProjectionStore and AuditStore both fit)."""

    async def current_generation(self) -> int: ...
    async def applied(self, generation: int) -> dict[int, int]: ...
    async def apply(self, generation: int, changes: Changes,
                    expected: Mapping[int, int]) -> None: ...


class RestartFold(Exception):
    """A store is behind the fold's batch start; refold from the beginning."""


@dataclass
class _Sink:
    name: str
    store: Target
    follow: bool  # follow the current generation (live) or stick to `generation`
    generation: int = 0
    applied: dict[int, int] = field(default_factory=dict)

    async def refresh(self) -> None:
        if self.follow:
            self.generation = await self.store.current_generation()
        self.applied = await self.store.applied(self.generation)

    async def write(self, batches: Mapping[int, PartitionBatch], attempts: int = 8,
                    everything: Changes | None = None) -> None:
        """`everything`: all of `batches` merged, shared by the sinks (read-only)."""
        for _ in range(attempts):
            parts: dict[int, Changes] = {}
            for p, b in batches.items():
                q = self.applied.get(p, 0)
                if q >= b.end:
                    continue
                if q < b.start:
                    raise RestartFold(f"{self.name} partition {p} is at {q}, batch starts "
                                      f"at {b.start}")
                parts[p] = b.changes
            if not parts:
                return
            merged = (everything if everything is not None and len(parts) == len(batches)
                      else _merge(parts))
            expected = {p: self.applied.get(p, 0) for p in parts}
            try:
                await self.store.apply(self.generation, merged, expected)
            except (StalePosition, GenerationMissing):
                # Another writer (a replica, a rebuild, or a generation switch)
                # moved the store; look again and decide per partition.
                await self.refresh()
                continue
            for p in parts:
                self.applied[p] = batches[p].end
            return
        raise StalePosition(f"{self.name}: gave up after {attempts} lost races")


async def _cancel(task: asyncio.Future[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, RestartFold, StopAsyncIteration):
        await task


def _merge(parts: Mapping[int, Changes]) -> Changes:
    if len(parts) == 1:
        return next(iter(parts.values()))
    merged = Changes()
    for changes in parts.values():
        merged.merge(changes)
    return merged


Progress = Callable[[int], None]


def _log_verdicts(folded: Mapping[int, PartitionBatch], before: Mapping[int, int]) -> None:
    """One line per newly projected rejection (per event at DEBUG), with the event's
    correlation id: the API logs the same id with the request that appended it."""
    accepted_too = log.isEnabledFor(logging.DEBUG)
    for p, batch in folded.items():
        start = before.get(p, 0)
        if batch.end <= start:
            continue
        for row in batch.changes.audit:
            if row["log_offset"] < start or (row["accepted"] and not accepted_too):
                continue
            fields = {"event_id": row["event_id"], "event_type": row["event_type"],
                      "correlation_id": row["correlation_id"], "namespace": row["namespace"],
                      "worker": row["worker"], "partition": p, "offset": row["log_offset"],
                      "code": row["reason_code"]}
            extra = {k: str(v) if k.endswith("_id") else v
                     for k, v in fields.items() if v is not None}
            if row["accepted"]:
                log.debug("accepted %s", row["event_type"], extra=extra)
            else:
                log.info("rejected %s: %s", row["event_type"], row["reason_code"], extra=extra)

# Folding allocates several container objects per event while the fold state
# (hundreds of thousands of long-lived objects) sits in the old generations.
# With the default thresholds the collector runs every 700 allocations and
# cost a quarter of a rebuild's time finding nothing: the fold builds no
# reference cycles. While any projector folds, collect young objects less
# often and freeze what existed before (modules, settings); both are undone
# when the last one stops. Memory is unaffected except for real cycles,
# which are still collected, only later.
_RELAXED_GC = (50_000, 20, 10)
_gc_users = 0
_gc_saved: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def relaxed_gc() -> Iterator[None]:
    global _gc_users, _gc_saved
    if _gc_users == 0:
        _gc_saved = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*_RELAXED_GC)
    _gc_users += 1
    try:
        yield
    finally:
        _gc_users -= 1
        if _gc_users == 0:
            gc.set_threshold(*_gc_saved)
            gc.unfreeze()


# While following the log's end, the sinks after the primary (the audit database)
# are written at most this long after a batch was read, merging every batch that
# arrived meanwhile into one transaction. Commands one after another each make a
# batch of one event; an audit transaction apiece cost more CPU than the rest of the
# projector's work for them, on the same event loop and cores as the next command's
# verdict path (docs/operations.md, Performance). Audit reads wait for the audit to
# catch up (services/api/audit_query.py), so they see at most this much more delay.
DEFAULT_TRAILING_LINGER_S = 0.1
# Batches queued for the trailing sinks while following: beyond either bound the
# primary waits for them (memory stays bounded when the audit database is slow).
_TRAILING_MAX_BATCHES = 256
# How long a stopping projector waits for what its stores still have to write.
_FLUSH_TIMEOUT_S = 5.0


@dataclass
class _Trailing:
    """One folded batch on its way to the sinks after the primary."""

    folded: dict[int, PartitionBatch]
    everything: Changes | None
    count: int
    started: float
    before: dict[int, int] | None
    primary: asyncio.Future[None]
    written: bool = False


def _ok(task: asyncio.Future[None]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


def _concatenated(group: list[_Trailing]) -> dict[int, PartitionBatch]:
    """Consecutive batches as one per partition: effects are values as of the end,
    so the later batch's value of a field wins and rows are appended in log order."""
    out: dict[int, PartitionBatch] = {}
    owned: set[int] = set()  # partitions whose Changes here are new (the folds' are shared)
    for item in group:
        for p, b in item.folded.items():
            first = out.get(p)
            if first is None:
                out[p] = b
                continue
            changes = first.changes
            if p not in owned:
                changes = Changes()
                changes.merge(first.changes)
                owned.add(p)
            changes.merge(b.changes)
            out[p] = PartitionBatch(first.start, b.end, changes)
    return out


class Projector:
    """Folds one event log into a projection store and (optionally) the audit store."""

    def __init__(self, log_: EventLog, store: Target, audit: Target | None = None, *,
                 generation: int | None = None, audit_generation: int | None = None,
                 batch_size: int = 5000, metrics: ProjectorMetrics | None = None,
                 on_batch: Callable[[dict[int, PartitionBatch]], Awaitable[None]] | None = None,
                 trailing_linger_s: float = DEFAULT_TRAILING_LINGER_S,
                 ) -> None:
        self.log = log_
        self.sinks = [_Sink("redis", store, follow=generation is None,
                            generation=generation or 0)]
        if audit is not None:
            self.sinks.append(_Sink("audit", audit, follow=audit_generation is None,
                                    generation=audit_generation or 0))
        self.batch_size = batch_size
        self.trailing_linger_s = trailing_linger_s
        self.metrics = metrics
        self.fold = Fold()
        self.on_batch = on_batch
        self.events = 0
        self.dead_letters = 0
        self._flush = asyncio.Event()  # set: trailing sinks stop lingering

    async def _reset(self) -> None:
        self.fold = Fold()
        for sink in self.sinks:
            await sink.refresh()

    def positions(self) -> dict[int, int]:
        return {p: f.next_offset for p, f in self.fold.partitions.items()}

    async def catch_up(self, *, until: Positions | None = None,
                       progress: Progress | None = None,
                       partitions: Iterable[int] | None = None) -> dict[int, int]:
        """Fold everything up to `until` (default: the log end now) and return positions.

        `partitions` limits the fold to those partitions (default: all); the
        fold never needs another partition, so a parallel rebuild gives each
        worker process a subset.
        """
        start = None if partitions is None else dict.fromkeys(sorted(partitions), 0)
        while True:
            await self._reset()
            try:
                await self._consume(self.log.read_batches(start, until=until,
                                                          max_batch=self.batch_size),
                                    progress)
                return self.positions()
            except RestartFold as exc:
                log.warning("restarting fold: %s", exc)

    async def advance(self, *, until: Positions | None = None,
                      progress: Progress | None = None,
                      partitions: Iterable[int] | None = None) -> dict[int, int]:
        """Continue folding from where this projector is, up to `until` (default: the end)."""
        owned = range(self.log.partitions) if partitions is None else sorted(partitions)
        folded = self.positions()
        start = {p: folded.get(p, 0) for p in owned}
        await self._consume(self.log.read_batches(start, until=until,
                                                  max_batch=self.batch_size), progress)
        return self.positions()

    async def run(self, stop: asyncio.Event, *, progress: Progress | None = None,
                  membership: AsyncIterator[frozenset[int]] | None = None) -> None:
        """Fold and follow the log until `stop` is set.

        `membership` yields the partitions this replica owns (default: all);
        on every change the fold restarts for the new set.
        """
        from projections.membership import static_membership

        assignments = membership if membership is not None else static_membership(
            self.log.partitions)
        current: asyncio.Task[None] | None = None
        next_assignment = asyncio.ensure_future(anext(assignments))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                waiting: set[asyncio.Future[Any]] = {next_assignment, stopper}
                if current is not None:
                    waiting.add(current)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    break
                if next_assignment in done:
                    owned = next_assignment.result()
                    next_assignment = asyncio.ensure_future(anext(assignments))
                    await _cancel(current)
                    log.info("projector owns partitions %s", sorted(owned))
                    current = (asyncio.ensure_future(self._follow(owned, progress))
                               if owned else None)
                elif current is not None and current in done:
                    exc = current.exception()
                    if exc is not None and not isinstance(exc, (RestartFold, StalePosition)):
                        raise exc
                    if exc is not None:
                        log.warning("restarting fold: %s", exc)
                    current = asyncio.ensure_future(self._follow(owned, progress))
        finally:
            await _cancel(current)
            await _cancel(next_assignment)
            await _cancel(stopper)
            with contextlib.suppress(Exception):
                await assignments.aclose()  # type: ignore[attr-defined]

    async def _follow(self, owned: frozenset[int], progress: Progress | None) -> None:
        await self._reset()
        batches = self.log.tail_batches(dict.fromkeys(sorted(owned), 0),
                                        max_batch=self.batch_size)
        try:
            await self._consume(batches, progress, follow=True)
        finally:
            await batches.aclose()

    async def _consume(self, batches: AsyncIterator[list[Record]], progress: Progress | None,
                       *, follow: bool = False) -> None:
        with relaxed_gc():
            await self._consume_batches(batches, progress, follow)

    async def _consume_batches(self, batches: AsyncIterator[list[Record]],
                               progress: Progress | None, follow: bool) -> None:
        # Fold the next batch while the previous one is written. The primary store
        # (what the API's verdict wait and the data plane read) is written first and on
        # its own: its batch N+1 waits for its batch N only, never for the slower audit
        # database, whose writes follow in order: one batch behind (at most two queued),
        # or while following, merged over DEFAULT_TRAILING_LINGER_S.
        primary: asyncio.Task[None] | None = None
        rest: deque[tuple[asyncio.Task[None], int]] = deque()  # (task, records)
        trailing: deque[_Trailing] = deque()  # batches the trailing sinks still need
        queued = 0  # records in `rest`
        gen_check: asyncio.Task[bool] | None = None
        last_gen_check = 0.0
        self._flush = asyncio.Event()
        try:
            async for records in batches:
                started = time.perf_counter()
                folded = self.fold.apply_batch(records)
                if primary is not None:
                    await primary
                # Not following: one batch behind at most. Following: as many as the
                # trailing sinks merge, within a batch's worth of records.
                while len(rest) > 1 and (not follow or queued > self.batch_size
                                         or len(rest) > _TRAILING_MAX_BATCHES):
                    task, count = rest.popleft()
                    queued -= count
                    await task
                if follow:
                    # Asked in the background (a PostgreSQL query for the audit sink),
                    # so a batch never waits for the check, only for a switch it found.
                    if gen_check is not None and gen_check.done():
                        moved, gen_check = gen_check.result(), None
                        if moved:
                            while rest:  # a refresh must not race a write of its sink
                                task, count = rest.popleft()
                                queued -= count
                                await task
                            await self._follow_generations()
                    if gen_check is None and time.monotonic() - last_gen_check > 0.5:
                        last_gen_check = time.monotonic()
                        gen_check = asyncio.ensure_future(self._generations_moved())
                everything = (_merge({p: b.changes for p, b in folded.items()})
                              if len(self.sinks) > 1 and len(folded) > 1 else None)
                # Live verdicts only, and only of events the primary store did not have
                # yet: every (re)start refolds from offset 0 and must not log the past again.
                before = dict(self.sinks[0].applied) if follow else None
                primary = asyncio.ensure_future(self.sinks[0].write(folded,
                                                                    everything=everything))
                item = _Trailing(folded, everything, len(records), started, before, primary)
                trailing.append(item)
                rest.append((asyncio.ensure_future(self._finish(
                    item, rest[-1][0] if rest else None, trailing,
                    self.trailing_linger_s if follow else 0.0)), len(records)))
                queued += len(records)
                if progress is not None:
                    progress(len(records))
            if primary is not None:
                await primary
            while rest:
                await rest.popleft()[0]
        finally:
            # Stopping (or restarting): what was read is written without lingering,
            # so a stopped projector leaves its audit as far as its primary store.
            self._flush.set()
            writing = [t for t in (primary, *(t for t, _ in rest))
                       if t is not None and not t.done()]
            if writing:
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait(writing, timeout=_FLUSH_TIMEOUT_S)
            for unfinished in (gen_check, primary, *(t for t, _ in rest)):
                if unfinished is not None and not unfinished.done():
                    unfinished.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await unfinished

    async def _generations_moved(self) -> bool:
        for sink in self.sinks:
            if sink.follow and await sink.store.current_generation() != sink.generation:
                return True
        return False

    async def _follow_generations(self) -> None:
        for sink in self.sinks:
            if sink.follow and await sink.store.current_generation() != sink.generation:
                log.info("%s: following the new current generation", sink.name)
                await sink.refresh()

    async def _finish(self, item: _Trailing, previous: asyncio.Future[None] | None,
                      trailing: deque[_Trailing], linger: float) -> None:
        """The rest of one batch: the other sinks (after the primary and after the
        previous batch's), then the verdict log, counters, `on_batch` and metrics.

        With `linger`, a batch at the log's end (shorter than a full batch) the
        trailing sinks do not have yet waits until `linger` after it was read, and
        is written together with every later batch the primary has written by then
        (their own tasks find themselves written)."""
        await item.primary
        if previous is not None:
            await previous
        if len(self.sinks) > 1 and not item.written:
            if (linger > 0 and item.count < self.batch_size
                    and any(sink.applied.get(p, 0) < b.end
                            for sink in self.sinks[1:] for p, b in item.folded.items())):
                delay = item.started + linger - time.perf_counter()
                if delay > 0 and not self._flush.is_set():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._flush.wait(), delay)
            group: list[_Trailing] = []
            for waiting in trailing:  # in log order; `item` is the first not written
                if waiting.written or (group and (linger <= 0 or not _ok(waiting.primary))):
                    break
                group.append(waiting)
            assert group and group[0] is item
            if len(group) == 1:
                folded, everything = item.folded, item.everything
            else:
                folded = _concatenated(group)
                everything = _merge({p: b.changes for p, b in folded.items()})
            await asyncio.gather(*(sink.write(folded, everything=everything)
                                   for sink in self.sinks[1:]))
            for done in group:
                done.written = True
        if trailing and trailing[0] is item:
            trailing.popleft()
        if item.before is not None:
            _log_verdicts(item.folded, item.before)
        self.events += item.count
        dead = sum(len(b.changes.dead_letters) for b in item.folded.values())
        self.dead_letters += dead
        if self.on_batch is not None:
            await self.on_batch(item.folded)
        if self.metrics is not None:
            self.metrics.observe_batch(item.folded, item.count, dead,
                                       time.perf_counter() - item.started)
