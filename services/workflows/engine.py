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
import re
import time
import uuid
from collections import Counter as Tally
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.workflows.model import STATUSES, Instance, apply, fold_all, instance_key
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
        self.invocations = Counter("wdl_workflow_invocations", "Invocations of instances "
                                   "through the gateway, by outcome (ok, retried)",
                                   ["outcome"], registry=r)
        self.records = Counter("wdl_workflow_records", "Records appended to the workflow log",
                               ["type"], registry=r)
        self.invocation_seconds = Histogram("wdl_workflow_invocation_seconds",
                                            "One invocation (replay + one step) through "
                                            "the gateway", registry=r)
        self.instances = Gauge("wdl_workflow_instances", "Instances this engine holds, by "
                               "status", ["status"], registry=r)


class InvokeError(Exception):
    """The gateway could not run the invocation (not the tenant's error): retried."""


class Invoker(Protocol):
    async def invoke(self, inst: Instance) -> dict[str, Any]: ...


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


class Engine:
    def __init__(self, store: WorkflowStore, invoker: Invoker, *, limits: Limits | None = None,
                 clock: Callable[[], float] = time.time, generation: int = 0,
                 metrics: EngineMetrics | None = None) -> None:
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
        self._sem = asyncio.Semaphore(self.limits.concurrency)
        self._ns_sems: dict[str, asyncio.Semaphore] = {}
        self._running = False

    def now_ms(self) -> int:
        return int(self.clock() * 1000)

    # --- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        self.states = fold_all(await self.store.load())
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
        return apply(self.states, record)

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

    def _namespace_slots(self, namespace: str) -> asyncio.Semaphore:
        sem = self._ns_sems.get(namespace)
        if sem is None:
            sem = self._ns_sems[namespace] = asyncio.Semaphore(
                max(1, min(self.limits.per_namespace, self.limits.concurrency)))
        return sem

    async def _run(self, key: str) -> None:
        backoff = 0.2
        try:
            # The namespace's slot first: its waiting instances hold no shared one.
            async with self._namespace_slots(self.states[key].namespace), self._sem:
                while self._running:
                    inst = self.states[key]
                    if not inst.runnable(self.now_ms()):
                        break
                    if inst.status == "queued":
                        async with self._lock(key):
                            await self._append(key, "started")
                    epoch = inst.epoch
                    try:
                        self.invocations += 1
                        with self.metrics.invocation_seconds.time():
                            report = await asyncio.wait_for(self.invoker.invoke(inst),
                                                            self.limits.invoke_timeout_s)
                        self.metrics.invocations.labels("ok").inc()
                        backoff = 0.2
                    except (InvokeError, TimeoutError, OSError, ValueError) as exc:
                        self.metrics.invocations.labels("retried").inc()
                        log.warning("invocation of %s failed, retrying: %s", key, exc)
                        await asyncio.sleep(backoff)
                        backoff = min(backoff * 2, 5.0)
                        continue
                    async with self._lock(key):
                        inst = self.states[key]
                        if inst.epoch != epoch or inst.finished:
                            continue
                        try:
                            await self._record(inst, report)
                        except (KeyError, TypeError, ValueError, InvokeError) as exc:
                            # The report comes from the tenant's isolate: one that makes no
                            # sense ends only that instance.
                            await self._append(key, "errored", error={
                                "name": "Error", "message": f"invalid step report: {exc}"[:500]})
        finally:
            self._tasks.pop(key, None)
            if self._running and key in self.states:
                self._schedule(self.states[key])

    async def _record(self, inst: Instance, report: dict[str, Any]) -> None:
        key, kind, lim = inst.key, report.get("kind"), self.limits
        now = self.now_ms()
        if kind in ("step", "sleep", "wait") and len(inst.steps) >= lim.max_steps:
            await self._append(key, "errored", error={
                "name": "Error", "message": f"instance history is bounded to {lim.max_steps} "
                "steps (docs/workflows.md)"})
            return
        if kind == "step":
            step = str(report["key"])
            if report.get("ok"):
                value = report.get("value")
                if inst.history_bytes + _size(value) > lim.max_history_bytes:
                    await self._append(key, "errored", error={
                        "name": "Error", "message": "instance history is bounded to "
                        f"{lim.max_history_bytes} bytes of step results (docs/workflows.md)"})
                elif _size(value) > lim.max_result_bytes:
                    await self._append(key, "step_failed", key=step, final=True,
                                       attempt=int(report.get("attempt", 1)), error={
                                           "name": "Error", "message": "step result is larger "
                                           f"than {lim.max_result_bytes} bytes"})
                else:
                    await self._append(key, "step_succeeded", key=step, value=value)
            elif report.get("final"):
                await self._append(key, "step_failed", key=step, final=True,
                                   attempt=int(report.get("attempt", 1)),
                                   error=report.get("error"))
            else:
                await self._append(key, "step_failed", key=step, final=False,
                                   attempt=int(report.get("attempt", 1)),
                                   error=report.get("error"),
                                   retry_at=now + max(0, int(report.get("delay_ms", 0))))
        elif kind == "sleep":
            until = int(report["until"])
            if until <= now:
                await self._append(key, "step_succeeded", key=str(report["key"]), value=None)
            else:
                await self._append(key, "sleeping", key=str(report["key"]), until=until)
        elif kind == "wait":
            etype = str(report["type"])
            for i, ev in enumerate(inst.events):
                if not ev["consumed"] and ev["type"] == etype:
                    await self._append(key, "step_succeeded", key=str(report["key"]),
                                       value=_event_view(ev), consumed=i)
                    return
            await self._append(key, "waiting", key=str(report["key"]), event_type=etype,
                               until=now + max(0, int(report.get("timeout_ms", 86_400_000))))
        elif kind == "complete":
            output = report.get("output")
            if _size(output) > lim.max_result_bytes:
                await self._append(key, "errored", error={
                    "name": "Error", "message": f"output is larger than "
                    f"{lim.max_result_bytes} bytes"})
            else:
                await self._append(key, "completed", output=output)
        elif kind == "error":
            await self._append(key, "errored", error=report.get("error") or {
                "name": "Error", "message": "unknown error"})
        else:
            raise InvokeError(f"unknown report {kind!r}")

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
        if _size(params) > self.limits.max_result_bytes:
            raise WorkflowError(400, "instance.params_too_large",
                                f"params are larger than {self.limits.max_result_bytes} bytes")
        key = instance_key(namespace, workflow, iid)
        async with self._lock(key):
            if key in self.states:
                raise WorkflowError(409, "instance.already_exists",
                                    "Workflow instance with this id already exists")
            inst = await self._append(key, "created", namespace=namespace, workflow=workflow,
                                      id=iid, worker=worker, version=version,
                                      class_name=class_name, params=params)
            assert inst is not None
            self._schedule(inst)
            return inst

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
                await self._append(inst.key, "restarted")
            else:
                raise WorkflowError(400, "invalid_op", f"unknown operation {op!r}")
            self._schedule(self.states[inst.key])

    async def send_event(self, namespace: str, workflow: str, instance_id: str,
                         event_type: Any, payload: Any) -> None:
        if not isinstance(event_type, str) or EVENT_TYPE_RE.fullmatch(event_type) is None:
            raise WorkflowError(400, "event.invalid_type", "Event type is invalid")
        if _size(payload) > self.limits.max_result_bytes:
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


def _log_failure(task: asyncio.Task[None], key: str) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("wake of %s failed: %s", key, task.exception())


def _event_view(ev: dict[str, Any]) -> dict[str, Any]:
    return {"payload": ev["payload"], "timestamp": ev["timestamp"], "type": ev["type"]}


async def rebuild_statuses(store: WorkflowStore) -> dict[str, dict[str, Any]]:
    """Every instance's status folded from the log alone (what a rebuild reproduces)."""
    return {k: i.status_view() for k, i in fold_all(await store.load()).items()}


