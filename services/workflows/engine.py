"""The engine: runs workflow instances step by step, every decision a record first.

Running an instance means asking the gateway to run the tenant's `run()` on the
instance's pinned version with the instance's history (`Invoker`): recorded
steps return their recorded outcome, the first unrecorded one runs and the
invocation stops there with a report. The engine appends the report as a
record, then continues at the next boundary. So a step whose result was
recorded never runs again; a step whose invocation was cut short (engine
killed before the append) runs again — at least once, as on Cloudflare.

Sleeps, waits and retry delays are timers here, rebuilt from the records at
start: an idle instance costs a timer, no isolate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import random
import re
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.fairshare import FairShare, FairShareMetrics, NamespaceShares
from services.workflows import bounds
from services.workflows.model import (
    ATTEMPT_BYTES,
    STATUSES,
    Instance,
    apply,
    fold_all,
    instance_key,
)
from services.workflows.slots import SlotShare
from services.workflows.store import WorkflowRecord, WorkflowStore

log = logging.getLogger("wdl.workflows")

ID_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")
EVENT_TYPE_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")


@dataclass(frozen=True)
class Limits:
    max_result_bytes: int = 1024 * 1024  # a step's result, an output, params, an event payload
    max_steps: int = 1024  # recorded steps per instance (history bound)
    max_history_bytes: int = 32 * 1024 * 1024  # recorded step values of one instance, in all
    max_events: int = 1024  # received events per instance
    max_batch: int = 100  # createBatch
    concurrency: int = 64  # invocations in flight
    # ... of one namespace: a quarter, so one namespace's slow steps (each may take
    # invoke_timeout_s) never hold every slot and stall every other namespace's workflows.
    per_namespace: int = 16
    # Past a step's default timeout (10 minutes): a long step is the tenant's to bound.
    invoke_timeout_s: float = 660.0
    # Instances of one namespace not yet finished: create/createBatch refused past it
    # (every one costs memory and a timer here; Cloudflare queues at most 2,000,000 an
    # account, this engine holds them all in one process).
    max_live_instances: int = 10_000
    # ... and what they hold together (params, step results, events): 10,000 instances of
    # 1 MiB params and 32 MiB history each would be 330 GB of this process.
    max_namespace_bytes: int = 1024 * 1024 * 1024
    # Invocations that failed in a row without the instance moving on (timeout, an
    # answer too large, too deep or not JSON, the gateway failing): each waits
    # failure_backoff_s doubling up to failure_backoff_max_s; past the count the
    # instance errors, whatever its steps' retry policies say.
    max_invoke_failures: int = 10
    failure_backoff_s: float = 1.0
    failure_backoff_max_s: float = 60.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Limits:
        """WDL_WORKFLOWS_CONCURRENCY, WDL_WORKFLOWS_PER_NAMESPACE (a namespace's default
        share of the slots), WDL_WORKFLOWS_MAX_INSTANCES (live instances a namespace),
        WDL_WORKFLOWS_MAX_NAMESPACE_BYTES (what they hold together)."""
        e = os.environ if env is None else env
        limits = cls()
        for var, name in (("WDL_WORKFLOWS_CONCURRENCY", "concurrency"),
                          ("WDL_WORKFLOWS_PER_NAMESPACE", "per_namespace"),
                          ("WDL_WORKFLOWS_MAX_INSTANCES", "max_live_instances"),
                          ("WDL_WORKFLOWS_MAX_NAMESPACE_BYTES", "max_namespace_bytes")):
            if e.get(var):
                limits = replace(limits, **{name: max(1, int(e[var]))})
        return limits


class WorkflowError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class EngineMetrics:
    """Prometheus metrics of one engine replica (docs/metrics.md, "Workflows engine")."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.shares = FairShareMetrics(r)  # wdl_fairshare_* of engine "workflows"
        self.invocations = Counter("wdl_workflow_invocations", "Invocations of instances "
                                   "through the gateway, by outcome (ok; failed: counted "
                                   "against the instance; deferred: the gateway unreachable "
                                   "or the namespace held, not counted)",
                                   ["outcome"], registry=r)
        self.refusals = Counter("wdl_workflow_refusals", "create/createBatch refused because "
                                "the namespace has too many unfinished instances",
                                registry=r)
        self.records = Counter("wdl_workflow_records", "Records appended to the workflow log",
                               ["type"], registry=r)
        self.invocation_seconds = Histogram("wdl_workflow_invocation_seconds",
                                            "One invocation (replay + one step) through "
                                            "the gateway", registry=r)
        self.instances = Gauge("wdl_workflow_instances", "Instances this engine holds, by "
                               "status", ["status"], registry=r)


class InvokeError(Exception):
    """The invocation failed (timed out, an answer too large, too deep or not JSON, the
    gateway failing while running it): counted against the instance, with backoff."""


class Unavailable(InvokeError):
    """The invocation could not start (the gateway unreachable, the namespace held): the
    platform's state, not the instance's doing; retried with backoff, not counted."""


class Held(Unavailable):
    """The namespace is held (containment): none of its instances can run until an
    operator lifts the hold, so the engine waits for the namespace, not per instance."""


# A held namespace is probed by one invocation at a time, this long apart (doubling):
# its instances wait on the namespace instead of each asking the gateway every 5 s
# (10,000 instances of a held namespace were ~2,900 invocations a second).
HELD_PROBE_S = 1.0
HELD_PROBE_MAX_S = 60.0


@dataclass
class _Gate:
    until: float = 0.0  # time.monotonic()
    backoff: float = 0.0
    probing: bool = False


class Invoker(Protocol):
    async def invoke(self, inst: Instance) -> dict[str, Any]: ...


def _size(value: Any) -> int:
    # Only on values whose depth was bounded first (bounds.py): json.dumps recurses.
    return len(json.dumps(value, separators=(",", ":")))


class _Warnings:
    """One line per failed invocation, at most one a namespace every `every_s` (a
    failing instance must not fill the platform's log); the lines skipped are counted."""

    def __init__(self, every_s: float = 10.0) -> None:
        self.every_s = every_s
        self._last: dict[str, float] = {}
        self._skipped: Tally[str] = Tally()

    def __call__(self, namespace: str, key: str, what: str) -> None:
        now = time.monotonic()
        if now - self._last.get(namespace, -self.every_s) < self.every_s:
            self._skipped[namespace] += 1
            return
        self._last[namespace] = now
        skipped = self._skipped.pop(namespace, 0)
        log.warning("invocation of %s: %s%s", key, bounds.clip(what, 300),
                    f" (and {skipped} more failures in {namespace})" if skipped else "")


class Engine:
    def __init__(self, store: WorkflowStore, invoker: Invoker, *, limits: Limits | None = None,
                 clock: Callable[[], float] = time.time, generation: int = 0,
                 metrics: EngineMetrics | None = None, slots: SlotShare | None = None,
                 shares: NamespaceShares | None = None) -> None:
        self.store = store
        self.invoker = invoker
        self.limits = limits or Limits()
        self.clock = clock
        self.generation = generation
        self.metrics = metrics if metrics is not None else EngineMetrics()
        self.states: dict[str, Instance] = {}
        self.invocations = 0
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wakes: set[asyncio.Task[None]] = set()
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        # Who runs next: the platform's fair share of the slots (services/fairshare.py),
        # each namespace's `workflow_slots` from its limits record when one is set.
        self.shares = shares
        per_namespace = (shares.of("workflow_slots") if shares is not None
                         else lambda _ns: self.limits.per_namespace)
        self.slots: SlotShare = slots if slots is not None else FairShare(
            "workflows", self.limits.concurrency, per_namespace, metrics=self.metrics.shares)
        self._live: Tally[str] = Tally()  # unfinished instances by namespace
        self._held: Tally[str] = Tally()  # their held_bytes by namespace
        # Room taken by creates (events, restarts) being written: counted like the live.
        self._reserved: Tally[str] = Tally()
        self._reserved_bytes: Tally[str] = Tally()
        self._deferred: dict[str, float] = {}  # key -> next backoff of an uncounted retry
        self._gates: dict[str, _Gate] = {}  # held namespaces
        self._warn = _Warnings()
        self._running = False

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.states = fold_all(await self.store.load())
        self._live = Tally(i.namespace for i in self.states.values() if not i.finished)
        self._held = Tally()
        for i in self.states.values():
            if not i.finished:
                self._held[i.namespace] += i.held_bytes
        self._running = True
        for inst in self.states.values():
            self._schedule(inst)
        log.info("workflows engine at generation %d: %d instances", self.generation,
                 len(self.states))

    async def stop(self) -> None:
        self._running = False
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        tasks = [*self._tasks.values(), *self._wakes]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()

    # --- records -----------------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = asyncio.Lock()
        return lock

    async def _append(self, instance: str, type_: str, /, **data: Any) -> Instance | None:
        record = WorkflowRecord(instance=instance, type=type_, at=self.now_ms(),
                                gen=self.generation, data=data)
        await self.store.append([record])
        self.metrics.records.labels(type_).inc()
        before = self.states.get(instance)
        was_live = before is not None and not before.finished
        held = before.held_bytes if before is not None and was_live else 0
        inst = apply(self.states, record)
        if inst is not None:
            if was_live != (not inst.finished):
                self._live[inst.namespace] += -1 if was_live else 1
            self._held[inst.namespace] += (0 if inst.finished else inst.held_bytes) - held
        return inst

    def observe(self) -> None:
        """Set the per-status gauge (at scrape time: it is a count over every instance)."""
        counts = Tally(i.status for i in self.states.values())
        for status in STATUSES:
            self.metrics.instances.labels(status).set(counts.get(status, 0))

    # --- scheduling --------------------------------------------------------------

    def _schedule(self, inst: Instance) -> None:
        if not self._running:
            return
        old = self._timers.pop(inst.key, None)
        if old is not None:
            old.cancel()
        if inst.finished or (inst.status == "paused" and inst.pending is None):
            return
        now = self.now_ms()
        if inst.pending is not None and (inst.pending["until"] > now or
                                         inst.pending["kind"] != "retry"):
            delay = max(0.0, (inst.pending["until"] - now) / 1000)
            loop = asyncio.get_running_loop()
            self._timers[inst.key] = loop.call_later(delay, self._fire, inst.key)
            return
        if inst.status != "paused" and inst.key not in self._tasks:
            self._tasks[inst.key] = asyncio.create_task(self._run(inst.key),
                                                        name=f"wf:{inst.key}")

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        task = asyncio.create_task(self._wake(key))
        self._wakes.add(task)
        task.add_done_callback(self._wakes.discard)
        task.add_done_callback(lambda t: _log_failure(t, key))

    def _retry_later(self, key: str, delay_s: float) -> None:
        """Run again after `delay_s`, outside any slot (an in-memory timer: not counted)."""
        old = self._timers.pop(key, None)
        if old is not None:
            old.cancel()
        loop = asyncio.get_running_loop()
        self._timers[key] = loop.call_later(delay_s, self._resume, key)

    def _resume(self, key: str) -> None:
        self._timers.pop(key, None)
        if self._running and key in self.states:
            self._schedule(self.states[key])

    async def _wake(self, key: str) -> None:
        if not self._running:
            return
        async with self._lock(key):
            inst = self.states[key]
            p = inst.pending
            if p is None or inst.finished:
                return
            if p["until"] > self.now_ms():
                self._schedule(inst)
                return
            if p["kind"] == "sleep":
                await self._append(key, "step_succeeded", key=p["key"], value=None)
            elif p["kind"] == "wait":
                await self._append(key, "step_failed", key=p["key"], final=True, attempt=1,
                                   error={"name": "Error", "message":
                                          f"Execution timed out after waiting for event "
                                          f"type {p['type']!r}"})
            self._schedule(self.states[key])

    async def _run(self, key: str) -> None:
        retry_in: float | None = None
        try:
            while self._running and retry_in is None:
                inst = self.states[key]
                if not inst.runnable(self.now_ms()):
                    break
                # One slot per invocation: between two steps of a long instance, the
                # other namespaces waiting get their turn.
                if self.shares is not None:
                    await self.shares.refresh(inst.namespace)
                async with self.slots.slot(inst.namespace):
                    retry_in = await self._invoke(key)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the store failing, or a bug: never a loop
            self._warn(self.states[key].namespace, key, f"run failed: {_describe(exc)}")
            retry_in = self._next_deferral(key)
        finally:
            self._tasks.pop(key, None)
            if self._running and key in self.states:
                if retry_in is not None:
                    self._retry_later(key, retry_in)
                else:
                    self._schedule(self.states[key])

    def _next_deferral(self, key: str) -> float:
        delay = self._deferred.get(key, 0.2)
        self._deferred[key] = min(delay * 2, 5.0)
        return delay

    async def _invoke(self, key: str) -> float | None:
        """One invocation of the instance and its record. Every way it can fail ends in a
        record with a backoff (or a deferral without a record): the instance never runs
        again at once. Returns the seconds to wait before the next try, if deferred."""
        inst = self.states[key]
        gate = self._gates.get(inst.namespace)
        if gate is not None:
            now = time.monotonic()
            if gate.probing or gate.until > now:  # held: wait for the namespace's probe
                return max(0.0, gate.until - now) + random.uniform(0.5, 1.5)
            gate.probing = True
        try:
            return await self._invoke_now(key, inst)
        finally:
            if gate is not None:
                gate.probing = False

    async def _invoke_now(self, key: str, inst: Instance) -> float | None:
        if inst.status == "queued":
            async with self._lock(key):
                await self._append(key, "started")
        epoch = inst.epoch
        self.invocations += 1
        try:
            with self.metrics.invocation_seconds.time():
                report = await asyncio.wait_for(self.invoker.invoke(inst),
                                                self.limits.invoke_timeout_s)
            if not isinstance(report, dict):
                raise InvokeError("the invocation's report is not an object")
        except asyncio.CancelledError:
            raise
        except Held as exc:
            self.metrics.invocations.labels("deferred").inc()
            self._warn(inst.namespace, key, f"deferred: {exc}")
            gate = self._gates.setdefault(inst.namespace, _Gate())
            gate.backoff = min(HELD_PROBE_MAX_S, max(HELD_PROBE_S, gate.backoff * 2))
            gate.until = time.monotonic() + gate.backoff
            return gate.backoff + random.uniform(0.5, 1.5)
        except Unavailable as exc:
            self.metrics.invocations.labels("deferred").inc()
            self._warn(inst.namespace, key, f"deferred: {exc}")
            return self._next_deferral(key)
        except Exception as exc:  # whatever the tenant made happen counts
            self._gates.pop(inst.namespace, None)  # the gateway ran it: not held
            self.metrics.invocations.labels("failed").inc()
            self._warn(inst.namespace, key, f"failed: {_describe(exc)}")
            await self._failed(key, epoch, _describe(exc))
            return None
        self._deferred.pop(key, None)
        self._gates.pop(inst.namespace, None)  # it runs: not held (any more)
        self.metrics.invocations.labels("ok").inc()
        async with self._lock(key):
            inst = self.states[key]
            if inst.epoch != epoch or inst.finished:
                return None
            try:
                records = self._decide(inst, report)
            except Exception as exc:  # a report that makes no sense
                self.metrics.invocations.labels("failed").inc()
                self._warn(inst.namespace, key, f"invalid report: {_describe(exc)}")
                await self._failed_locked(inst, f"invalid step report: {_describe(exc)}")
                return None
            for type_, data in records:
                await self._append(key, type_, **data)
        return None

    async def _failed(self, key: str, epoch: int, message: str) -> None:
        async with self._lock(key):
            inst = self.states[key]
            if inst.epoch == epoch and not inst.finished:
                await self._failed_locked(inst, message)

    async def _failed_locked(self, inst: Instance, message: str) -> None:
        """Count a failed invocation: the next one waits (doubling), and the runner charges
        it to the current step as an attempt under that step's retry policy
        (workerd/tenant/workflows.js); past max_invoke_failures in a row the instance errors."""
        lim = self.limits
        count = inst.failures + 1
        error = {"name": "Error", "message": bounds.clip(message, bounds.MAX_ERROR_MESSAGE)}
        if count > lim.max_invoke_failures:
            await self._append(inst.key, "errored", error={
                "name": "Error", "message": bounds.clip(
                    f"Execution failed after {count - 1} failed invocations in a row: "
                    f"{message}", bounds.MAX_ERROR_MESSAGE)})
            return
        delay = min(lim.failure_backoff_s * 2 ** (count - 1), lim.failure_backoff_max_s)
        await self._append(inst.key, "invoke_failed", failures=count, error=error,
                           retry_at=self.now_ms() + int(delay * 1000))

    def _decide(self, inst: Instance, report: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """The records a report makes (pure: raising leaves the instance untouched)."""
        kind, lim = report.get("kind"), self.limits
        now = self.now_ms()
        if kind in ("step", "sleep", "wait") and len(inst.steps) >= lim.max_steps:
            return [("errored", {"error": {
                "name": "Error", "message": f"instance history is bounded to {lim.max_steps} "
                "steps (docs/workflows.md)"}})]
        if kind == "step":
            step = _step_key(report)
            attempt = int(report.get("attempt", 1))
            if report.get("ok"):
                value = report.get("value")
                bounds.check_value(value, "step result")
                size = _size(value)
                if inst.history_bytes + inst.events_bytes + size > lim.max_history_bytes:
                    return [("errored", {"error": {
                        "name": "Error", "message": "instance history is bounded to "
                        f"{lim.max_history_bytes} bytes of step results (docs/workflows.md)"}})]
                if self._held[inst.namespace] + size > lim.max_namespace_bytes:
                    return [("step_failed", {"key": step, "final": True, "attempt": attempt,
                                             "error": {"name": "Error", "message": "the "
                                                       "unfinished instances of the namespace "
                                                       "hold more than "
                                                       f"{lim.max_namespace_bytes} bytes"}})]
                if size > lim.max_result_bytes:
                    return [("step_failed", {"key": step, "final": True, "attempt": attempt,
                                             "error": {"name": "Error", "message": "step result "
                                                       f"is larger than {lim.max_result_bytes} "
                                                       "bytes"}})]
                return [("step_succeeded", {"key": step, "value": value})]
            error = bounds.clean_error(report.get("error"))
            if report.get("final"):
                return [("step_failed", {"key": step, "final": True, "attempt": attempt,
                                         "error": error})]
            if inst.history_bytes + _size(error) + ATTEMPT_BYTES > lim.max_history_bytes:
                return [("errored", {"error": {
                    "name": "Error", "message": "instance history is bounded to "
                    f"{lim.max_history_bytes} bytes of step results and retried attempts "
                    f"(step {step!r} failed {attempt} times; docs/workflows.md)"}})]
            delay = min(max(0, int(report.get("delay_ms", 0))), 366 * 86_400_000)
            return [("step_failed", {"key": step, "final": False, "attempt": attempt,
                                     "error": error, "retry_at": now + delay})]
        if kind == "sleep":
            until = int(report["until"])
            if until <= now:
                return [("step_succeeded", {"key": _step_key(report), "value": None})]
            return [("sleeping", {"key": _step_key(report), "until": until})]
        if kind == "wait":
            etype = report["type"]
            if not isinstance(etype, str) or EVENT_TYPE_RE.fullmatch(etype) is None:
                raise InvokeError("waitForEvent: invalid event type")
            for i, ev in enumerate(inst.events):
                if not ev["consumed"] and ev["type"] == etype:
                    return [("step_succeeded", {"key": _step_key(report),
                                                "value": _event_view(ev), "consumed": i})]
            timeout = min(max(0, int(report.get("timeout_ms", 86_400_000))), 366 * 86_400_000)
            return [("waiting", {"key": _step_key(report), "event_type": etype,
                                 "until": now + timeout})]
        if kind == "complete":
            output = report.get("output")
            bounds.check_value(output, "output")
            if _size(output) > lim.max_result_bytes:
                return [("errored", {"error": {"name": "Error", "message": "output is larger "
                                               f"than {lim.max_result_bytes} bytes"}})]
            return [("completed", {"output": output})]
        if kind == "error":
            return [("errored", {"error": bounds.clean_error(
                report.get("error") or {"name": "Error", "message": "unknown error"})})]
        raise InvokeError(f"unknown report kind {bounds.clip(str(kind), 100)!r}")

    # --- the API (binding, control API, CLI) ------------------------------------

    def get(self, namespace: str, workflow: str, instance_id: str) -> Instance:
        inst = self.states.get(instance_key(namespace, workflow, instance_id))
        if inst is None:
            raise WorkflowError(404, "instance.not_found", "instance.not_found")
        return inst

    async def create(self, namespace: str, workflow: str, worker: str, version: str,
                     class_name: str, instance_id: str | None, params: Any) -> Instance:
        iid = instance_id if instance_id is not None else str(uuid.uuid4())
        if not isinstance(iid, str) or ID_RE.fullmatch(iid) is None:
            raise WorkflowError(400, "instance.invalid_id",
                                "WorkflowError: Workflow instance has invalid id")
        if bounds.depth_exceeds(params, bounds.MAX_DEPTH):
            raise WorkflowError(400, "instance.params_too_deep",
                                f"params are nested deeper than {bounds.MAX_DEPTH} levels")
        if _size(params) > self.limits.max_result_bytes:
            raise WorkflowError(400, "instance.params_too_large",
                                f"params are larger than {self.limits.max_result_bytes} bytes")
        key = instance_key(namespace, workflow, iid)
        async with self._lock(key):
            if key in self.states:
                raise WorkflowError(409, "instance.already_exists",
                                    "Workflow instance with this id already exists")
            with self._room(namespace, 1, _size(params)):
                inst = await self._append(key, "created", namespace=namespace,
                                          workflow=workflow, id=iid, worker=worker,
                                          version=version, class_name=class_name,
                                          params=params)
            assert inst is not None
            self._schedule(inst)
            return inst

    @contextmanager
    def _room(self, namespace: str, count: int, size: int) -> Iterator[None]:
        """check_room, then hold the room until the record is written: creates at once
        were all counted before any was written (200 made against a bound of 50)."""
        self.check_room(namespace, count, size)
        self._reserved[namespace] += count
        self._reserved_bytes[namespace] += size
        try:
            yield
        finally:
            self._reserved[namespace] -= count
            self._reserved_bytes[namespace] -= size
            if not self._reserved[namespace] and not self._reserved_bytes[namespace]:
                del self._reserved[namespace], self._reserved_bytes[namespace]

    def check_room(self, namespace: str, count: int, size: int = 0) -> None:
        """429 when `count` more instances (holding `size` bytes) would put the namespace
        over its bound of unfinished ones or of what they hold (createBatch asks for the
        whole batch first)."""
        held = self._held[namespace] + self._reserved_bytes[namespace]
        most = self.limits.max_namespace_bytes
        if held + size > most:
            self.metrics.refusals.inc()
            raise WorkflowError(429, "workflow_state_full",
                                f"WorkflowError: (workflow_state_full) the unfinished "
                                f"instances of namespace {namespace} hold {held} bytes "
                                f"(params, step results, events) and may hold at most "
                                f"{most}: wait for some to finish, or terminate them")
        live = self._live[namespace] + self._reserved[namespace]
        bound = self.limits.max_live_instances
        if live + count > bound:
            self.metrics.refusals.inc()
            raise WorkflowError(429, "too_many_instances",
                                f"WorkflowError: (too_many_instances) namespace {namespace} "
                                f"has {live} instances not yet finished and may have at most "
                                f"{bound}: wait for some to finish, or terminate them")

    async def control(self, namespace: str, workflow: str, instance_id: str, op: str) -> None:
        inst = self.get(namespace, workflow, instance_id)
        async with self._lock(inst.key):
            inst = self.states[inst.key]
            if op == "pause":
                if not inst.finished and inst.status != "paused":
                    await self._append(inst.key, "paused")
            elif op == "resume":
                if inst.status == "paused":
                    await self._append(inst.key, "resumed")
            elif op == "terminate":
                if inst.finished:
                    raise WorkflowError(409, "instance.cannot_terminate",
                                        "WorkflowError: (instance.cannot_terminate) Cannot "
                                        "terminate instance since its on a finite state")
                await self._append(inst.key, "terminated")
            elif op == "restart":
                # Live again if it was finished: within the namespace's bounds.
                with self._room(namespace, 1 if inst.finished else 0,
                                inst.params_bytes if inst.finished else 0):
                    await self._append(inst.key, "restarted")
            else:
                raise WorkflowError(400, "invalid_op", f"unknown operation {op!r}")
            self._schedule(self.states[inst.key])

    async def send_event(self, namespace: str, workflow: str, instance_id: str,
                         event_type: Any, payload: Any) -> None:
        if not isinstance(event_type, str) or EVENT_TYPE_RE.fullmatch(event_type) is None:
            raise WorkflowError(400, "event.invalid_type", "Event type is invalid")
        if bounds.depth_exceeds(payload, bounds.MAX_DEPTH):
            raise WorkflowError(400, "event.payload_too_deep",
                                f"payload is nested deeper than {bounds.MAX_DEPTH} levels")
        size = _size(payload)
        if size > self.limits.max_result_bytes:
            raise WorkflowError(400, "event.payload_too_large",
                                f"payload is larger than {self.limits.max_result_bytes} bytes")
        inst = self.get(namespace, workflow, instance_id)
        async with self._lock(inst.key):
            inst = self.states[inst.key]
            if inst.finished:
                raise WorkflowError(409, "instance.finished",
                                    f"instance is {inst.status}: it takes no events")
            if len(inst.events) >= self.limits.max_events:
                raise WorkflowError(409, "instance.too_many_events",
                                    f"more than {self.limits.max_events} events")
            # Events are held with the instance like its steps: one bound for both (else
            # 1,024 events of 1 MiB made one instance hold 1 GiB).
            bound = self.limits.max_history_bytes
            if inst.history_bytes + inst.events_bytes + size > bound:
                raise WorkflowError(409, "instance.history_full",
                                    f"WorkflowError: (instance.history_full) the instance's "
                                    f"history (steps and events) is bounded to {bound} "
                                    "bytes (docs/workflows.md)")
            with self._room(namespace, 0, size):
                await self._append(inst.key, "event_received", event_type=event_type,
                                   payload=payload)
            inst = self.states[inst.key]
            p = inst.pending
            if p is not None and p["kind"] == "wait" and p["type"] == event_type:
                index = len(inst.events) - 1
                await self._append(inst.key, "step_succeeded", key=p["key"],
                                   value=_event_view(inst.events[index]), consumed=index)
            self._schedule(self.states[inst.key])

    def instances(self, namespace: str, workflow: str | None = None) -> list[Instance]:
        return sorted((i for i in self.states.values() if i.namespace == namespace and
                       (workflow is None or i.workflow == workflow)),
                      key=lambda i: (i.created_at, i.id))

    def workflows(self, namespace: str) -> list[dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for inst in self.states.values():
            if inst.namespace != namespace:
                continue
            row = out.setdefault(inst.workflow, {
                "workflow": inst.workflow, "worker": inst.worker,
                "class_name": inst.class_name, "instances": 0, "by_status": {}})
            row["instances"] += 1
            row["by_status"][inst.status] = row["by_status"].get(inst.status, 0) + 1
        return [out[k] for k in sorted(out)]


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "Execution timed out: the invocation did not end in time"
    return bounds.clip(str(exc) or type(exc).__name__, 1000)


def _step_key(report: dict[str, Any]) -> str:
    key = report["key"]
    if not isinstance(key, str) or not key or len(key) > bounds.MAX_STEP_KEY:
        raise InvokeError(f"a step key is a string of at most {bounds.MAX_STEP_KEY} characters")
    return key


def _log_failure(task: asyncio.Task[None], key: str) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("wake of %s failed: %s", key, task.exception())


def _event_view(ev: dict[str, Any]) -> dict[str, Any]:
    return {"payload": ev["payload"], "timestamp": ev["timestamp"], "type": ev["type"]}


async def rebuild_statuses(store: WorkflowStore) -> dict[str, dict[str, Any]]:
    """Every instance's status folded from the log alone (what a rebuild reproduces)."""
    return {k: i.status_view() for k, i in fold_all(await store.load()).items()}


