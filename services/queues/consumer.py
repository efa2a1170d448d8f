"""The consumer: batches each queue's messages and runs its consumer worker's queue().

Per partition of the message log it tracks every message read and not yet
finished; the committed offset is the lowest unfinished one (`Tracker`), so
the log never moves past a message that was neither acked, re-appended (a
retry, with its delay as `not_before`), dead-lettered nor dropped with a
counted reason. A message not yet due waits here; one of a queue without a
consumer waits too (docs/queues.md says what that costs).

A batch goes to the gateway's `/__wdl/queue`, which runs the worker's active
version (`Fetcher.queue`) and answers workerd's outcome: `outcome`, `ackAll`,
`retryBatch`, `explicitAcks`, `retryMessages`. Per message, an explicit ack or
retry wins, then the batch's ackAll/retryAll, then the outcome (ok: ack;
exception: retry). Any failure of the tenant's batch — a timeout, a broken
connection while it ran, an error answer about running it, an undecodable message —
counts an attempt like a thrown `queue()`; only a batch the platform could not run
(no active version, the gateway unreachable) is tried again without counting, with
backoff (services/queues/invoke.py).

Fair shares: every batch runs in a slot of a FairShare — at most `capacity` in flight
per replica (the HTTP pool to the gateway has as many connections) and at most the
namespace's `queue_batches` share of them; namespaces waiting for a slot take turns.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import heapq
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import msgspec

from services.fairshare import FairShare
from services.queues.bounds import QueueBounds
from services.queues.invoke import Invocation
from services.queues.metrics import QueueMetrics
from services.queues.model import QueueMessage
from services.queues.store import Delivery, QueueLog

log = logging.getLogger("wdl.queues")
UNDELIVERED_BACKOFF_MS = 1000
UNDELIVERED_BACKOFF_MAX_MS = 60_000  # the platform down: 1 s, 2 s, 4 s ... at most this
# A message held longer than this (of a queue without a consumer, or delayed further than
# this) may be appended again and its original finished, so that it stops holding back
# its partition's commit — when that frees enough of others' traffic (QueueBounds).
PARK_AFTER_S = 30.0
PARK_EVERY_S = 5.0
SETTINGS_TTL_S = 1.0
DEFAULT_CONCURRENCY = 16


class Tracker:
    """Read-but-unfinished offsets of each partition, and what may be committed."""

    def __init__(self) -> None:
        self.epochs: dict[int, int] = {}
        # partition -> {offset: (bytes read on the partition before it, its size)}
        self.open: dict[int, dict[int, tuple[int, int]]] = {}
        self.seen: dict[int, int] = {}  # partition -> next offset after the highest read
        self.read_bytes: dict[int, int] = {}  # partition -> bytes read since assigned
        self.committed: dict[int, int] = {}

    def assign(self, epochs: dict[int, int]) -> None:
        for p, epoch in epochs.items():
            self.epochs[p] = epoch
            self.open[p] = {}
            self.seen.pop(p, None)
            self.read_bytes[p] = 0
            self.committed.pop(p, None)

    def read(self, d: Delivery) -> bool:
        if self.epochs.get(d.partition) != d.epoch:
            return False
        before = self.read_bytes.get(d.partition, 0)
        size = len(d.message.body)
        self.open.setdefault(d.partition, {})[d.offset] = (before, size)
        self.read_bytes[d.partition] = before + size
        self.seen[d.partition] = max(self.seen.get(d.partition, 0), d.offset + 1)
        return True

    def finish(self, d: Delivery) -> None:
        if self.epochs.get(d.partition) == d.epoch:
            self.open.get(d.partition, {}).pop(d.offset, None)

    def commits(self) -> dict[int, int]:
        out = {}
        for p, seen in self.seen.items():
            pending = self.open.get(p)
            point = min(pending) if pending else seen
            if self.committed.get(p) != point:
                out[p] = point
        return out

    def committed_to(self, offsets: dict[int, int]) -> None:
        self.committed.update(offsets)

    def unblocks(self, partition: int, pinned: set[int]) -> tuple[set[int], int]:
        """Of `pinned` (open offsets that could be appended again), those below the first
        other open offset, and the bytes of finished messages the commit would then move
        past: what re-appending them is worth."""
        pending = self.open.get(partition, {})
        others = [o for o in pending if o not in pinned]
        high = min(others) if others else self.seen.get(partition, 0)
        low_pinned = [o for o in pinned if o < high and o in pending]
        if not low_pinned:
            return set(), 0
        low = min(low_pinned)
        start = pending[low][0]
        end = pending[high][0] if high in pending else self.read_bytes.get(partition, 0)
        held = sum(pending[o][1] for o in low_pinned)
        return set(low_pinned), max(0, end - start - held)


class Invoker(Protocol):
    async def invoke(self, namespace: str, worker: str, queue: str,
                     messages: list[dict[str, Any]]) -> Invocation:
        """Ran (workerd's queue outcome), failed (counts an attempt) or not run."""


SettingsLookup = Callable[[str, str], Awaitable[dict[str, Any] | None]]
"""(namespace, queue) -> the queue's record (with its `consumer`), None once deleted."""


@dataclass
class _Queue:
    waiting: list[Delivery] = field(default_factory=list)
    first_at: float = 0.0
    running: int = 0


class Consumer:
    def __init__(self, log_: QueueLog, invoker: Invoker, settings: SettingsLookup,
                 metrics: QueueMetrics, *, clock: Callable[[], float] = time.time,
                 bounds: QueueBounds | None = None,
                 share_of: Callable[[str], int] | None = None,
                 refresh_share: Callable[[str], Awaitable[None]] | None = None) -> None:
        """`share_of(namespace)`: the namespace's in-flight batches (its `queue_batches`
        limit, NamespaceShares); default the platform's `bounds.per_namespace`.
        `refresh_share(namespace)` re-reads it (cached) before batches are started."""
        self.log = log_
        self.invoker = invoker
        self.lookup = settings
        self.metrics = metrics
        self.clock = clock
        self.bounds = bounds if bounds is not None else QueueBounds()
        per_ns = self.bounds.per_namespace
        self.share_of: Callable[[str], int] = share_of or (lambda ns: per_ns)
        self.refresh_share = refresh_share
        self.share = FairShare("queues", self.bounds.capacity, self.share_of,
                               metrics=metrics.fairshare)
        self.tracker = Tracker()
        self.queues: dict[str, _Queue] = {}
        self.delayed: list[tuple[int, int, Delivery]] = []  # (due ms, seq, delivery)
        self._seq = 0
        self._held_at: dict[tuple[int, int], float] = {}  # (partition, offset) -> since
        self._sizes: dict[tuple[int, int], tuple[str, int]] = {}  # -> (queue key, bytes)
        self.backlog: dict[str, int] = {}  # queue key -> bytes held on this replica
        self._not_run: dict[str, int] = {}  # message id -> batches in a row not run
        self.started: dict[str, int] = {}  # namespace -> batches started, not yet ended
        self.parked = 0
        self.parked_bytes = 0
        self._settings: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        log_.on_assign = self._assigned

    def _assigned(self, epochs: dict[int, int]) -> None:
        self.tracker.assign(epochs)
        # What was read of a reassigned partition is read again from its last commit.
        for q in self.queues.values():
            q.waiting = [d for d in q.waiting if d.partition not in epochs]
        self.delayed = [e for e in self.delayed if e[2].partition not in epochs]
        heapq.heapify(self.delayed)
        self._held_at = {k: v for k, v in self._held_at.items() if k[0] not in epochs}
        for k in [k for k in self._sizes if k[0] in epochs]:
            self._unweigh(k)

    def _weigh(self, d: Delivery) -> None:
        k = (d.partition, d.offset)
        self._unweigh(k)
        self._sizes[k] = (d.message.key, len(d.message.body))
        self.backlog[d.message.key] = self.backlog.get(d.message.key, 0) + len(d.message.body)
        self.metrics.backlog.labels(d.message.namespace).inc(len(d.message.body))

    def _unweigh(self, k: tuple[int, int]) -> None:
        entry = self._sizes.pop(k, None)
        if entry is not None:
            self.metrics.backlog.labels(entry[0].partition("/")[0]).dec(entry[1])
            left = self.backlog.get(entry[0], 0) - entry[1]
            if left > 0:
                self.backlog[entry[0]] = left
            else:
                self.backlog.pop(entry[0], None)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="wdl-queues-consumer")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def alive(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        last_commit = last_park = 0.0
        while not self._stop.is_set():
            try:
                for d in await self.log.poll(500, 100):
                    if self.tracker.read(d):
                        self._weigh(d)
                        self._admit(d)
                self._release_due()
                await self._flush()
                now = self.clock()
                if now - last_park >= PARK_EVERY_S:
                    self._expire()
                    await self._park()
                    last_park = now
                if now - last_commit >= 0.2:
                    await self._commit()
                    last_commit = now
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("queue consumer loop failed; retrying")
                await asyncio.sleep(0.5)
        with contextlib.suppress(Exception):
            await self._commit()

    async def _commit(self) -> None:
        offsets = self.tracker.commits()
        if offsets:
            await self.log.commit(offsets)
            self.tracker.committed_to(offsets)

    def _expired(self, d: Delivery, now: float) -> bool:
        return d.message.timestamp / 1000 + self.bounds.retention_s < now

    def _admit(self, d: Delivery) -> None:
        if self._expired(d, self.clock()):
            self._drop([d], "retention")
            return
        self._held_at.setdefault((d.partition, d.offset), self.clock())
        now_ms = int(self.clock() * 1000)
        if d.message.not_before > now_ms:
            self._delay(d, d.message.not_before)
            return
        q = self.queues.setdefault(d.message.key, _Queue())
        if not q.waiting:
            q.first_at = self.clock()
        q.waiting.append(d)

    def _drop(self, ds: list[Delivery], reason: str) -> None:
        for d in ds:
            self.metrics.dropped.labels(d.message.namespace, reason).inc()
            self._done(d)

    def _expire(self) -> None:
        """Drop what outlived the retention period while held (Cloudflare deletes a
        message not consumed within the queue's retention period)."""
        now = self.clock()
        for q in self.queues.values():
            old = [d for d in q.waiting if self._expired(d, now)]
            if old:
                q.waiting = [d for d in q.waiting if not self._expired(d, now)]
                self._drop(old, "retention")
        old = [e[2] for e in self.delayed if self._expired(e[2], now)]
        if old:
            self.delayed = [e for e in self.delayed if not self._expired(e[2], now)]
            heapq.heapify(self.delayed)
            self._drop(old, "retention")

    def _delay(self, d: Delivery, due_ms: int) -> None:
        self._seq += 1
        heapq.heappush(self.delayed, (due_ms, self._seq, d))

    def _release_due(self) -> None:
        now_ms = int(self.clock() * 1000)
        while self.delayed and self.delayed[0][0] <= now_ms:
            _, _, d = heapq.heappop(self.delayed)
            q = self.queues.setdefault(d.message.key, _Queue())
            if not q.waiting:
                q.first_at = self.clock()
            q.waiting.append(d)

    async def _park(self) -> None:
        """Append again what has been held for PARK_AFTER_S and will not be delivered soon
        — when that moves its partition's commit past at least as many bytes of finished
        messages as it copies (and `park_min_gain_bytes`) — then finish the originals: the
        copies are read back and held in their place. So the copies never outgrow the
        traffic they unblock; without such traffic nothing is copied (a restart then
        redelivers at most the held messages and what they hold back, bounded the same
        way)."""
        now = self.clock()
        old = now - PARK_AFTER_S
        candidates: list[Delivery] = []
        for key, q in self.queues.items():
            cached = self._settings.get(key)
            if cached is None or cached[1] is None or isinstance(cached[1].get("consumer"),
                                                                dict):
                continue
            candidates += [d for d in q.waiting
                           if self._held_at.get((d.partition, d.offset), now) <= old]
        far = int((now + PARK_AFTER_S) * 1000)
        candidates += [d for due, _, d in self.delayed
                       if due > far and self._held_at.get((d.partition, d.offset), now) <= old]
        by_partition: dict[int, dict[int, Delivery]] = {}
        for d in candidates:
            by_partition.setdefault(d.partition, {})[d.offset] = d
        moving: list[Delivery] = []
        for p, ds in by_partition.items():
            chosen, gain = self.tracker.unblocks(p, set(ds))
            size = sum(len(ds[o].message.body) for o in chosen)
            if chosen and gain >= max(self.bounds.park_min_gain_bytes, size):
                moving += [ds[o] for o in chosen]
        if not moving:
            return
        ids = {id(d) for d in moving}
        await self.log.append([d.message for d in moving])
        for q in self.queues.values():
            q.waiting = [d for d in q.waiting if id(d) not in ids]
        self.delayed = [e for e in self.delayed if id(e[2]) not in ids]
        heapq.heapify(self.delayed)
        for d in moving:
            self._done(d)
        self.parked += len(moving)
        self.parked_bytes += sum(len(d.message.body) for d in moving)

    def _done(self, d: Delivery) -> None:
        self._held_at.pop((d.partition, d.offset), None)
        self._unweigh((d.partition, d.offset))
        self._not_run.pop(d.message.id, None)
        self.tracker.finish(d)

    def held(self, key: str) -> list[Delivery]:
        """Messages of queue `key` read by this replica and waiting (not running): a queue
        without a consumer (a dead-letter queue, typically) keeps its messages here."""
        waiting = list(self.queues[key].waiting) if key in self.queues else []
        return waiting + sorted((d for _, _, d in self.delayed if d.message.key == key),
                                key=lambda d: d.offset)

    async def redrive(self, key: str, to_queue: str) -> int:
        """Move the held messages of `key` to `to_queue` (same namespace), attempts reset."""
        q = self.queues.get(key)
        moving = list(q.waiting) if q is not None else []
        moving += [d for _, _, d in self.delayed if d.message.key == key]
        if not moving:
            return 0
        ids = {id(d) for d in moving}
        if q is not None:
            q.waiting = [d for d in q.waiting if id(d) not in ids]
        self.delayed = [e for e in self.delayed if id(e[2]) not in ids]
        heapq.heapify(self.delayed)
        try:
            await self.log.append([msgspec.structs.replace(d.message, queue=to_queue, attempts=1,
                                                           not_before=0) for d in moving])
        except Exception:
            for d in moving:  # not moved: they stay where they were
                self._admit(d)
            raise
        for d in moving:
            self._done(d)
        return len(moving)

    async def _settings_of(self, key: str) -> dict[str, Any] | None:
        cached = self._settings.get(key)
        now = self.clock()
        if cached is not None and now - cached[0] < SETTINGS_TTL_S:
            return cached[1]
        ns, _, queue = key.partition("/")
        value = await self.lookup(ns, queue)
        self._settings[key] = (now, value)
        return value

    async def _flush(self) -> None:
        now = self.clock()
        for key, q in self.queues.items():
            if not q.waiting:
                continue
            doc = await self._settings_of(key)
            if doc is None:
                # The queue was deleted (a send checks it exists): its messages go with it.
                log.warning("queue %s was deleted: %d messages dropped", key, len(q.waiting))
                self._drop(q.waiting, "queue_deleted")
                q.waiting = []
                continue
            settings = doc.get("consumer")
            if not isinstance(settings, dict):
                continue  # no consumer: the messages wait for one
            ns = key.partition("/")[0]
            if self.refresh_share is not None:
                try:
                    await self.refresh_share(ns)
                except Exception:  # the projection unreachable: the cached or default share
                    log.warning("reading the limits of %s failed", ns, exc_info=True)
            size = int(settings.get("max_batch_size") or 10)
            limit = int(settings.get("max_concurrency") or 0) or DEFAULT_CONCURRENCY
            timeout = float(settings.get("max_batch_timeout") or 0)
            # A namespace never has more batches started (running or waiting for a slot
            # of the FairShare) than its share: the rest of its messages wait here.
            while q.waiting and q.running < limit and (
                    self.started.get(ns, 0) < self.share.cap(ns)) and (
                    len(q.waiting) >= size or now - q.first_at >= timeout):
                batch, q.waiting = q.waiting[:size], q.waiting[size:]
                q.first_at = now
                q.running += 1
                self.started[ns] = self.started.get(ns, 0) + 1
                task = asyncio.create_task(self._deliver(key, q, settings, batch))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _deliver(self, key: str, q: _Queue, settings: dict[str, Any],
                       batch: list[Delivery]) -> None:
        ns, _, queue = key.partition("/")
        try:
            wire = [{"id": d.message.id, "timestamp": d.message.timestamp,
                     "body": base64.b64encode(d.message.body).decode("ascii"),
                     "contentType": d.message.content_type, "attempts": d.message.attempts}
                    for d in batch]
            async with self.share.slot(ns):
                started = self.clock()
                result = await self.invoker.invoke(ns, settings["worker"], queue, wire)
            if result.kind == "not_run" or (result.kind == "ran" and result.answer is None):
                self._undelivered(ns, batch, result.reason)
                return
            now = self.clock()
            self.metrics.handler_seconds.observe(max(0.0, now - started))
            if result.kind == "failed":
                # The tenant's batch failed without an outcome: like a thrown queue().
                self.metrics.batches.labels(ns, "failed").inc()
                self.metrics.failures.labels(ns, result.reason).inc()
                log.info("queue %s: a batch of %d failed (%s): an attempt each", key,
                         len(batch), result.reason)
                answer: dict[str, Any] = {"outcome": "exception"}
            else:
                assert result.answer is not None
                answer = result.answer
                self.metrics.batches.labels(ns, str(answer.get("outcome") or "unknown")).inc()
                if answer.get("undecodable"):
                    self.metrics.failures.labels(ns, "undecodable").inc(
                        len(answer["undecodable"]))
            for d in batch:
                self.metrics.latency.observe(max(0.0, now - d.message.timestamp / 1000))
            await self._settle(ns, queue, settings, batch, answer)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Nothing was finished: the messages stay open and are tried again.
            log.exception("delivering a batch of %s failed", key)
            self._undelivered(ns, batch, "consumer_error")
        finally:
            q.running -= 1
            self.started[ns] -= 1
            if self.started[ns] <= 0:
                del self.started[ns]

    def _undelivered(self, ns: str, batch: list[Delivery], reason: str) -> None:
        """The platform could not run the batch: again later, no attempt counted, after a
        backoff that doubles each time in a row (bounded; retention ends it)."""
        self.metrics.undelivered.labels(ns).inc(len(batch))
        now_ms = int(self.clock() * 1000)
        for d in batch:
            streak = self._not_run.get(d.message.id, 0)
            self._not_run[d.message.id] = streak + 1
            self._delay(d, now_ms + min(UNDELIVERED_BACKOFF_MAX_MS,
                                        UNDELIVERED_BACKOFF_MS << min(streak, 16)))
        log.info("queue batch of %s not run (%s): %d messages again later", ns, reason,
                 len(batch))

    async def _settle(self, ns: str, queue: str, settings: dict[str, Any],
                      batch: list[Delivery], answer: dict[str, Any]) -> None:
        acks = set(answer.get("explicitAcks") or ())
        retries = {r.get("msgId"): r.get("delaySeconds")
                   for r in answer.get("retryMessages") or () if isinstance(r, dict)}
        # Messages the gateway could not decode were not in the tenant's batch: each is a
        # failed attempt of its own.
        broken = {u.get("id") for u in answer.get("undecodable") or () if isinstance(u, dict)}
        batch_retry = answer.get("retryBatch") or {}
        ok = answer.get("outcome") == "ok"
        acked: list[Delivery] = []
        again: list[tuple[Delivery, Any]] = []
        for d in batch:
            mid = d.message.id
            if mid in broken:
                again.append((d, None))
            elif mid in retries:
                again.append((d, retries[mid]))
            elif mid in acks or answer.get("ackAll"):
                acked.append(d)
            elif batch_retry.get("retry"):
                again.append((d, batch_retry.get("delaySeconds")))
            elif ok:
                acked.append(d)
            else:
                again.append((d, None))
        now_ms = int(self.clock() * 1000)
        appends: list[QueueMessage] = []
        dead: list[QueueMessage] = []
        dropped = 0
        max_retries = int(settings.get("max_retries", 3))
        for d, delay in again:
            m = d.message
            if m.attempts > max_retries:
                if settings.get("dead_letter_queue"):
                    dead.append(msgspec.structs.replace(
                        m, queue=settings["dead_letter_queue"], attempts=1, not_before=0))
                else:
                    dropped += 1
                    log.warning("queue %s/%s: message %s dropped after %d attempts "
                                "(max_retries %d, no dead-letter queue)", ns, queue, m.id,
                                m.attempts, max_retries)
                continue
            seconds = delay if isinstance(delay, int | float) else settings.get("retry_delay", 0)
            appends.append(msgspec.structs.replace(
                m, attempts=m.attempts + 1, not_before=now_ms + int(float(seconds or 0) * 1000)))
        # The copies are durable before the originals count as finished.
        if appends or dead:
            await self.log.append([*appends, *dead])
        self.metrics.acked.labels(ns).inc(len(acked))
        self.metrics.retried.labels(ns).inc(len(appends))
        self.metrics.dead_lettered.labels(ns).inc(len(dead))
        if dropped:
            self.metrics.dropped.labels(ns, "max_retries_no_dlq").inc(dropped)
        for d in batch:
            self._done(d)
