"""The scheduler loop: hold the lease, claim each due slot (a fenced write), dispatch it.

Guarantee (docs/scheduler.md): **at most once per slot**. A slot is dispatched
only after the log accepted its claim, and the fold accepts one claim per
slot, only from the current lease holder. A replica that dies between the
claim and the dispatch loses that slot (it shows as `claimed` with no
result); it is never fired twice. After a takeover the new holder fires the
slots that fell due while nobody held the lease, if they are younger than
`catchup_ms`; older ones are counted as missed and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from croniter import croniter
from prometheus_client import CollectorRegistry, Counter, Gauge

from eventlog import events as ev
from eventlog.cron import CronError, canonical, to_croniter
from projections.reader import ProjectionReader
from services.fairshare import FairShare, FairShareMetrics, NamespaceShares
from services.leases import LeaseClient, LeaseLost
from services.observability.labels import NamespaceLabels
from services.scheduler.clock import Clock
from services.scheduler.dispatch import POOL_SIZE

# Runs dispatched at once, every namespace together (the dispatcher's HTTP pool is
# sized to match, services/scheduler/dispatch.py), and what one namespace may hold of
# them unless its `limits` say otherwise (NamespaceShares key "cron_runs"): 8 namespaces
# at their cap fill the pool, so a ninth waits at most one turn of the round-robin.
DISPATCH_CAPACITY = POOL_SIZE
DEFAULT_CRON_RUNS = 8

log = logging.getLogger("wdl.scheduler")


class Dispatcher(Protocol):
    async def dispatch(self, namespace: str, worker: str, version_id: str, cron: str,
                       slot_ms: int) -> tuple[str, str]:
        """Run the worker's scheduled handler; returns (status, error)."""


@dataclass(frozen=True)
class Trigger:
    namespace: str
    worker: str
    version_id: str
    cron: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.namespace, self.worker, self.cron


def slots_between(cron: str, after_ms: int, until_ms: int, limit: int = 1000) -> list[int]:
    """Slot times of `cron` (Cloudflare's syntax, eventlog/cron.py) in (after_ms, until_ms],
    oldest first."""
    it = croniter(to_croniter(cron), datetime.fromtimestamp(after_ms / 1000, tz=UTC))
    out: list[int] = []
    while len(out) < limit:
        slot = int(it.get_next(float) * 1000)
        if slot > until_ms:
            break
        out.append(slot)
    return out


class SchedulerMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.due = Counter("wdl_scheduler_slots_due", "Slots that fell due", registry=r)
        self.fired = Counter("wdl_scheduler_slots_fired", "Slots dispatched", registry=r)
        self.late = Counter("wdl_scheduler_slots_late",
                            "Slots dispatched more than the lateness bound after their time",
                            registry=r)
        self.failed = Counter("wdl_scheduler_slots_failed", "Dispatches that failed",
                              registry=r)
        self.missed = Counter("wdl_scheduler_slots_missed",
                              "Slots skipped: older than the catch-up window", registry=r)
        self.namespaces = NamespaceLabels()
        # wdl_fairshare_{held,waiting}{engine="cron"}: runs dispatching, runs waiting.
        self.fairshare = FairShareMetrics(r, namespaces=self.namespaces)
        self.runs = Counter("wdl_scheduler_runs", "Cron runs by namespace and outcome "
                            "(ok, error: scheduled() threw or was refused, timeout, skipped: "
                            "waited on its namespace's share past the catch-up window)",
                            ["namespace", "status"], registry=r)
        self.late_runs = Counter("wdl_scheduler_runs_late",
                                 "Cron runs that started more than the lateness bound after "
                                 "their slot", ["namespace"], registry=r)
        self.leader = Gauge("wdl_scheduler_is_leader", "1 while this replica holds the lease",
                            registry=r)
        self.generation = Gauge("wdl_scheduler_lease_generation",
                                "Lease generation this replica holds (0 when none)",
                                registry=r)


@dataclass
class _Leadership:
    generation: int
    expires_at: int


@dataclass
class Scheduler:
    leases: LeaseClient
    reader: ProjectionReader
    dispatcher: Dispatcher
    clock: Clock
    holder: str
    scope: str = "scheduler"
    ttl_ms: int = 10_000
    tick_ms: int = 500
    catchup_ms: int = 60_000
    late_ms: int = 5_000
    dispatch_timeout_s: float = 30.0
    metrics: SchedulerMetrics = field(default_factory=SchedulerMetrics)
    # What one namespace may run at once: NamespaceShares plugs in here, as
    # `cron_runs=lambda ns: shares.cap("cron_runs", ns)`, `refresh_share=shares.refresh`
    # (read the namespace's `limits` before its run asks for a slot).
    cron_runs: Callable[[str], int] = lambda namespace: DEFAULT_CRON_RUNS
    refresh_share: Callable[[str], Awaitable[None]] | None = None
    capacity: int = DISPATCH_CAPACITY
    share: FairShare | None = None
    _lead: _Leadership | None = None
    _last: dict[tuple[str, str, str], int] = field(default_factory=dict)
    _running: set[asyncio.Task[None]] = field(default_factory=set)
    _skipped: set[tuple[str, str]] = field(default_factory=set)  # legacy crons warned about

    def __post_init__(self) -> None:
        if self.share is None:
            self.share = FairShare("cron", self.capacity, self.cron_runs,
                                   metrics=self.metrics.fairshare)

    @property
    def leading(self) -> bool:
        return self._lead is not None

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    await self._hold_lease()
                    if self._lead is not None:
                        await self._fire_due()
                except LeaseLost as exc:
                    log.warning("lease lost, standing by: %s", exc)
                    self._step_down()
                except Exception:
                    log.exception("scheduler tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.tick_ms / 1000 / self._speed())
        finally:
            for task in list(self._running):
                task.cancel()
            await asyncio.gather(*self._running, return_exceptions=True)
            if self._lead is not None:
                with contextlib.suppress(Exception):
                    await self.leases.release(self.scope, self.holder, self._lead.generation)
            self._step_down()

    def _speed(self) -> float:
        return float(getattr(self.clock, "factor", 1.0))

    def _step_down(self) -> None:
        self._lead = None
        self._last.clear()
        self.metrics.leader.set(0)
        self.metrics.generation.set(0)

    async def _hold_lease(self) -> None:
        now = self.clock.now_ms()
        if self._lead is not None:
            if self._lead.expires_at - now < self.ttl_ms * 2 // 3:
                await self.leases.renew(self.scope, self.holder, self._lead.generation,
                                        self.ttl_ms)
                self._lead.expires_at = now + self.ttl_ms
            return
        generation = await self.leases.acquire(self.scope, self.holder, self.ttl_ms)
        if generation is not None:
            log.info("%s leads the scheduler at generation %d", self.holder, generation)
            self._lead = _Leadership(generation, now + self.ttl_ms)
            self.metrics.leader.set(1)
            self.metrics.generation.set(generation)

    async def triggers(self) -> list[Trigger]:
        out: list[Trigger] = []
        for owner, doc in (await self.reader.cron_schedule()).items():
            namespace, _, worker = owner.partition("/")
            schedules: dict[str, str] = {}
            for cron in doc["crons"]:
                try:
                    key = canonical(cron)
                except CronError as exc:
                    # Accepted under older, looser rules (e.g. 6 fields, one run a second):
                    # history stays readable, but only Cloudflare's syntax is run.
                    if (owner, cron) not in self._skipped:
                        self._skipped.add((owner, cron))
                        log.warning("cron %r of %s is not run: %s; redeploy the worker with "
                                    "a five-field cron", cron, owner, exc)
                    continue
                if key in schedules:
                    # Deployed before equivalent spellings were refused: one schedule
                    # fires once a slot, under its first spelling.
                    if (owner, cron) not in self._skipped:
                        self._skipped.add((owner, cron))
                        log.warning("cron %r of %s is the schedule of %r: run once, as %r",
                                    cron, owner, schedules[key], schedules[key])
                    continue
                schedules[key] = cron
                out.append(Trigger(namespace, worker, doc["version_id"], cron))
        return out

    async def _starting_point(self, trigger: Trigger, now: int) -> int:
        """Where a new leader resumes a trigger: after its last claimed slot, bounded."""
        runs = await self.reader.store.hgetall(f"cron_runs:{trigger.namespace}/{trigger.worker}")
        claimed = [int(k.split("|", 1)[0]) for k in runs if k.split("|", 1)[1] == trigger.cron]
        floor = now - self.catchup_ms
        if not claimed:
            # Never run: start with the slot that is due now, not the distant past.
            return max(floor, now - 1)
        last = max(claimed)
        if last < floor:
            self.metrics.missed.inc(len(slots_between(trigger.cron, last, floor)))
            return floor
        return last

    async def _fire_due(self) -> None:
        assert self._lead is not None
        now = self.clock.now_ms()
        by_namespace: dict[str, list[Trigger]] = {}
        for trigger in await self.triggers():
            by_namespace.setdefault(trigger.namespace, []).append(trigger)
        # One claimer per namespace, side by side: claims are appends answered one by
        # one, and 128 of one namespace's claims must not go before another's first.
        results = await asyncio.gather(*(self._fire_namespace(triggers, now)
                                         for triggers in by_namespace.values()),
                                       return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result

    async def _fire_namespace(self, triggers: list[Trigger], now: int) -> None:
        for trigger in triggers:
            after = self._last.get(trigger.key)
            if after is None:
                after = await self._starting_point(trigger, now)
            for slot in slots_between(trigger.cron, after, now):
                self.metrics.due.inc()
                if self._lead is None or self.clock.now_ms() >= self._lead.expires_at:
                    return  # never act on an expired lease; renew on the next tick
                if await self._claim(trigger, slot):
                    self._start(trigger, slot)
                self._last[trigger.key] = slot
            self._last.setdefault(trigger.key, after)

    async def _claim(self, trigger: Trigger, slot: int) -> bool:
        assert self._lead is not None
        verdict = await self.leases.submit(ev.CronSlotClaimed(
            scope=self.scope, holder=self.holder, generation=self._lead.generation,
            namespace=trigger.namespace, worker=trigger.worker,
            version_id=trigger.version_id, cron=trigger.cron, slot_ms=slot),
            self._lead.generation)
        if verdict.accepted:
            return True
        if verdict.code == "slot_already_claimed":
            return False
        raise LeaseLost(f"claim refused: {verdict.code}")

    def _start(self, trigger: Trigger, slot: int) -> None:
        assert self._lead is not None
        task = asyncio.create_task(self._dispatch(trigger, slot, self._lead.generation))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _dispatch(self, trigger: Trigger, slot: int, generation: int) -> None:
        assert self.share is not None
        label = self.metrics.namespaces.labels(trigger.namespace)
        status: ev.CronStatus
        late = 0
        duration = 0
        if self.refresh_share is not None:
            with contextlib.suppress(Exception):  # the cached cap (or default) stands
                await self.refresh_share(trigger.namespace)
        try:
            # Wait for the namespace's share, at most until the slot leaves the catch-up
            # window: a namespace that queues more runs than it may hold loses its own
            # oldest ones, counted, and never holds anyone else's.
            wait_s = max(0.0, (slot + self.catchup_ms - self.clock.now_ms())
                         / 1000 / self._speed())
            lease = await asyncio.wait_for(self.share.acquire(trigger.namespace), wait_s)
        except TimeoutError:
            lease = None
        if lease is None:
            status = "skipped"
            error = (f"not run: namespace {trigger.namespace} had "
                     f"{self.share.held(trigger.namespace)} cron runs going (its share) until "
                     f"this slot was {self.catchup_ms // 1000}s old")
        else:
            try:
                late = max(0, self.clock.now_ms() - slot)
                if late > self.late_ms:
                    self.metrics.late.inc()
                    self.metrics.late_runs.labels(label).inc()
                status, error, duration = await self._invoke(trigger, slot)
            finally:
                lease.release()
            self.metrics.fired.inc()
        if status != "ok":
            self.metrics.failed.inc()
        self.metrics.runs.labels(label, status).inc()
        verdict = await self.leases.submit(ev.CronRunCompleted(
            scope=self.scope, holder=self.holder, generation=generation,
            namespace=trigger.namespace, worker=trigger.worker, version_id=trigger.version_id,
            cron=trigger.cron, slot_ms=slot, status=status, duration_ms=duration,
            error=error[:2000], late_ms=late if late > self.late_ms else 0), generation)
        if not verdict.accepted:
            log.warning("run of %s/%s at %d not recorded: %s", trigger.namespace,
                        trigger.worker, slot, verdict.code)


    async def _invoke(self, trigger: Trigger, slot: int) -> tuple[ev.CronStatus, str, int]:
        """Runs the slot's scheduled(); (status, error, duration in ms)."""
        started = time.perf_counter()
        status: ev.CronStatus
        try:
            outcome, error = await asyncio.wait_for(
                self.dispatcher.dispatch(trigger.namespace, trigger.worker, trigger.version_id,
                                         trigger.cron, slot), self.dispatch_timeout_s)
            status = "ok" if outcome == "ok" else "error"
        except TimeoutError:
            status, error = "timeout", f"no answer within {self.dispatch_timeout_s}s"
        except Exception as exc:
            status, error = "error", f"{type(exc).__name__}: {exc}"[:2000]
        return status, error, int((time.perf_counter() - started) * 1000)


def namespace_shares(reader: ProjectionReader) -> NamespaceShares:
    """Each namespace's `cron_runs` share: its `limits` (`wdl ns limits set --cron-runs`),
    else DEFAULT_CRON_RUNS. Pass `cron_runs=shares.of("cron_runs")` and
    `refresh_share=shares.refresh` to the Scheduler."""
    return NamespaceShares(reader.namespace, {"cron_runs": DEFAULT_CRON_RUNS})


def runs_of(doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Cron run records of one worker (from `cron_runs:{ns}/{worker}`), newest first."""
    rows = []
    for key, value in doc.items():
        ms, _, cron = key.partition("|")
        rows.append({"slot_ms": int(ms), "cron": cron, **value})
    return sorted(rows, key=lambda r: (-r["slot_ms"], r["cron"]))
