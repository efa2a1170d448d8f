"""A workflow instance as an event-sourced aggregate: records folded into its state.

Record types (data fields in docs/workflows.md and docs/events.md):
`created`, `started`, `step_succeeded`, `step_failed`, `sleeping`, `waiting`,
`event_received`, `paused`, `resumed`, `completed`, `errored`, `terminated`,
`restarted`, `invoke_failed`. The fold is pure: the engine, a rebuild and the tests all use it,
so a rebuild reproduces every instance's status exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from services.workflows.store import WorkflowRecord

STATUSES = ("queued", "running", "paused", "waiting", "complete", "errored", "terminated")
FINISHED = frozenset({"complete", "errored", "terminated"})


def instance_key(namespace: str, workflow: str, instance_id: str) -> str:
    return f"{namespace}/{workflow}/{instance_id}"


@dataclass
class Instance:
    key: str
    namespace: str
    workflow: str
    id: str
    worker: str
    version: str
    class_name: str
    params: Any
    created_at: int
    status: str = "queued"
    steps: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    # What the instance waits for: {kind: sleep|wait|retry, key, until, type?}
    pending: dict[str, Any] | None = None
    output: Any = None
    error: dict[str, str] | None = None
    updated_at: int = 0
    gen: int = 0
    records: int = 0
    # Status to return to on resume (paused keeps what it interrupted).
    before_pause: str = "queued"
    # Bumped by each restart: a run that began before it must not record into the new one.
    epoch: int = 0
    # JSON bytes of the recorded step values and errors: every invocation carries them.
    history_bytes: int = 0
    # JSON bytes of the received events' payloads: held here too, in the same bound.
    events_bytes: int = 0
    params_bytes: int = 0
    # Invocations that failed in a row (engine-side: timeout, undecodable answer...) since
    # the instance last moved on; and the last one's error until a step is charged with it.
    failures: int = 0
    failure: dict[str, Any] | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def held_bytes(self) -> int:
        """What the engine holds of this instance's data (its namespace's bound)."""
        return self.params_bytes + self.history_bytes + self.events_bytes

    def runnable(self, now_ms: int) -> bool:
        if self.status not in ("queued", "running", "waiting"):
            return False
        # A step's retry is due by time alone; sleeps and waits end with a record.
        return self.pending is None or (self.pending["kind"] == "retry" and
                                        self.pending["until"] <= now_ms)

    def history(self) -> dict[str, Any]:
        """What the tenant's run() replays: recorded step outcomes and attempts, and the
        failed invocation the current step is to be charged with (tenant/workflows.js)."""
        out: dict[str, Any] = {"steps": self.steps, "attempts": self.attempts}
        if self.failure is not None:
            out["failure"] = self.failure
        return out

    def status_view(self) -> dict[str, Any]:
        view: dict[str, Any] = {"status": self.status, "output": self.output}
        if self.error is not None:
            view["error"] = self.error
        return view

    def summary(self) -> dict[str, Any]:
        """A row of a listing: no params, output or error (each up to 1 MiB), as
        Cloudflare's list of instances carries ids, statuses and times only."""
        return {"id": self.id, "namespace": self.namespace, "workflow": self.workflow,
                "worker": self.worker, "version": self.version, "class_name": self.class_name,
                "status": self.status, "created_at": self.created_at,
                "updated_at": self.updated_at, "steps": len(self.steps),
                "records": self.records}

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "namespace": self.namespace, "workflow": self.workflow,
                "worker": self.worker, "version": self.version, "class_name": self.class_name,
                "status": self.status, "output": self.output, "error": self.error,
                "params": self.params, "created_at": self.created_at,
                "updated_at": self.updated_at, "pending": self.pending,
                "steps": len(self.steps), "records": self.records}


def apply(states: dict[str, Instance], r: WorkflowRecord) -> Instance | None:
    """Fold one record; returns the instance it touched (None: ignored)."""
    d = r.data
    inst = states.get(r.instance)
    if r.type == "created":
        if inst is not None:
            return None  # an id is created once; a duplicate create is ignored
        inst = Instance(key=r.instance, namespace=d["namespace"], workflow=d["workflow"],
                        id=d["id"], worker=d["worker"], version=d["version"],
                        class_name=d["class_name"], params=d.get("params"),
                        created_at=r.at, updated_at=r.at, gen=r.gen)
        inst.params_bytes = _json_len(d.get("params"))
        states[r.instance] = inst
        inst.records = 1
        return inst
    if inst is None:
        return None
    if r.gen < inst.gen:
        return None  # written by an engine that had been fenced off by a newer lease
    inst.gen = r.gen
    inst.records += 1
    inst.updated_at = r.at
    t = r.type
    if t == "terminated":
        inst.status, inst.pending = "terminated", None
    elif t == "restarted":
        inst.steps, inst.attempts, inst.events = {}, {}, []
        inst.history_bytes, inst.failures, inst.failure = 0, 0, None
        inst.events_bytes = 0
        inst.pending, inst.output, inst.error = None, None, None
        inst.status = "queued"
        inst.epoch += 1
    elif inst.finished:
        return None  # nothing but restart moves a finished instance
    elif t == "started":
        _running(inst)
    elif t == "paused":
        if inst.status != "paused":
            inst.before_pause = inst.status
        inst.status = "paused"
    elif t == "resumed":
        if inst.status == "paused":
            inst.status = inst.before_pause
    elif t == "step_succeeded":
        key = d["key"]
        inst.steps[key] = {"ok": True, "value": d.get("value")}
        inst.history_bytes += _json_len(d.get("value"))
        if d.get("consumed") is not None:
            inst.events[int(d["consumed"])]["consumed"] = True
        if inst.pending is not None and inst.pending.get("key") in (key, None):
            inst.pending = None
        inst.failures, inst.failure = 0, None
        _running(inst)
    elif t == "step_failed":
        key = d["key"]
        inst.attempts[key] = int(d.get("attempt", inst.attempts.get(key, 0) + 1))
        # The failed invocation (if any) is now charged to this step: its count of
        # failures in a row stays (a step failing that way still backs off longer).
        inst.failure = None
        if d.get("final"):
            inst.steps[key] = {"ok": False, "error": d.get("error")}
            inst.history_bytes += _json_len(d.get("error"))
            if inst.pending is not None and inst.pending.get("key") in (key, None):
                inst.pending = None
        else:
            # Every attempt is a record of the log: attempts count against the history
            # bound too, or a step retried without end grows the log without end.
            inst.history_bytes += _json_len(d.get("error")) + ATTEMPT_BYTES
            inst.pending = {"kind": "retry", "key": key, "until": int(d["retry_at"])}
        _running(inst)
    elif t == "invoke_failed":
        inst.failures = int(d.get("failures", inst.failures + 1))
        inst.failure = {"count": inst.failures, "error": d.get("error")}
        inst.pending = {"kind": "retry", "key": None, "until": int(d["retry_at"])}
        _running(inst)
    elif t == "sleeping":
        inst.pending = {"kind": "sleep", "key": d["key"], "until": int(d["until"])}
        inst.failures, inst.failure = 0, None
        _waiting(inst)
    elif t == "waiting":
        inst.failures, inst.failure = 0, None
        inst.pending = {"kind": "wait", "key": d["key"], "type": d["event_type"],
                        "until": int(d["until"])}
        _waiting(inst)
    elif t == "event_received":
        inst.events.append({"type": d["event_type"], "payload": d.get("payload"),
                            "timestamp": r.at, "consumed": False})
        inst.events_bytes += _json_len(d.get("payload"))
    elif t == "completed":
        inst.status, inst.output, inst.pending = "complete", d.get("output"), None
    elif t == "errored":
        inst.status, inst.error, inst.pending = "errored", d.get("error"), None
    return inst


# What one retried attempt costs the history besides its error (the record's own fields).
ATTEMPT_BYTES = 64


def _json_len(value: Any) -> int:
    try:
        return len(json.dumps(value, separators=(",", ":")))
    except (RecursionError, ValueError):
        # Written before values were depth-bounded (services/workflows/bounds.py): a
        # replay must not stop at it; count it as the largest value.
        return 1024 * 1024


def _running(inst: Instance) -> None:
    if inst.status == "paused":
        inst.before_pause = "running"
    else:
        inst.status = "running"


def _waiting(inst: Instance) -> None:
    if inst.status == "paused":
        inst.before_pause = "waiting"
    else:
        inst.status = "waiting"


def fold_all(records: Iterable[WorkflowRecord]) -> dict[str, Instance]:
    states: dict[str, Instance] = {}
    for r in records:
        apply(states, r)
    return states
