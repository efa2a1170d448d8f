"""Audit rows: one per folded event, plus deployment and lease history rows."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import msgspec

from eventlog import events as ev
from eventlog.aggregates import AggregateKind
from eventlog.envelope import Envelope
from projections.changes import Changes
from projections.fold.encoding import _json, dumps

if TYPE_CHECKING:
    from projections.fold.core import Verdict


def audit(env: Envelope, verdict: Verdict, out: Changes) -> None:
    """Append the event's audit row (and its deployment or lease history row)."""
    payload: Any = env.payload  # fields checked per type by _AUDIT_SHAPES
    shape = _AUDIT_SHAPES.get(type(payload))
    if shape is None:
        shape = _AUDIT_SHAPES[type(payload)] = _audit_shape(type(payload))
    has_namespace, has_worker, history, action = shape
    namespace = payload.namespace if has_namespace else None
    worker = payload.worker if has_worker else None
    out.audit.append({
        "log_partition": verdict.partition,
        "log_offset": verdict.offset,
        "event_id": env.event_id,
        "event_type": env.type,
        "schema_version": env.schema_version,
        "aggregate_kind": _KIND_TEXT.get(env.aggregate_kind) or str(env.aggregate_kind),
        "aggregate_id": env.aggregate_id,
        "namespace": namespace,
        "worker": worker,
        "actor": env.actor,
        "accepted": verdict.accepted,
        "reason_code": verdict.code,
        "reason": None if verdict.accepted else verdict.message,
        "aggregate_version": verdict.aggregate_version,
        "occurred_at_ms": env.occurred_at,
        "idempotency_key": env.idempotency_key,
        "correlation_id": env.correlation_id,
        "payload": _audit_payload(payload),
    })
    if history == _DEPLOYMENT:
        out.deployments.append({
            "log_partition": verdict.partition, "log_offset": verdict.offset,
            "namespace": payload.namespace, "worker": payload.worker,
            "action": action,
            "version_id": getattr(payload, "version_id", None),
            "actor": env.actor, "accepted": verdict.accepted,
            "reason_code": verdict.code, "occurred_at_ms": env.occurred_at,
        })
    elif history == _LEASE:
        out.lease_history.append({
            "log_partition": verdict.partition, "log_offset": verdict.offset,
            "scope": payload.scope, "action": action,
            "holder": payload.holder, "generation": payload.generation,
            "expires_at_ms": getattr(payload, "expires_at", None),
            "actor": env.actor, "accepted": verdict.accepted,
            "reason_code": verdict.code, "occurred_at_ms": env.occurred_at,
        })


_DEPLOYMENT, _LEASE = 1, 2
_DEPLOYMENT_EVENTS = (ev.WorkerVersionUploaded, ev.VersionPromoted, ev.WorkerRolledBack,
                      ev.VersionDeleted, ev.WorkerDeleted, ev.WorkerPurged, ev.WorkerTagsSet)
_LEASE_EVENTS = (ev.LeaseAcquired, ev.LeaseRenewed, ev.LeaseReleased, ev.LeaseTakenOver)
# Per payload type: (has namespace, has worker, history table, action). Looked up
# once per type instead of per event: getattr() with a default raises and catches
# an AttributeError inside for every event type that lacks the field.
_AUDIT_SHAPES: dict[type[Any], tuple[bool, bool, int, str]] = {}
# str() of a StrEnum member runs Python code; the few kinds are rendered once.
_KIND_TEXT: dict[Any, str] = {kind: str(kind) for kind in AggregateKind}


def _audit_shape(cls: type[Any]) -> tuple[bool, bool, int, str]:
    fields = getattr(cls, "__struct_fields__", ())
    if issubclass(cls, _DEPLOYMENT_EVENTS):
        return ("namespace" in fields, "worker" in fields, _DEPLOYMENT,
                cls.TYPE.removeprefix("worker."))
    if issubclass(cls, _LEASE_EVENTS):
        return ("namespace" in fields, "worker" in fields, _LEASE,
                cls.TYPE.removeprefix("lease."))
    return "namespace" in fields, "worker" in fields, 0, ""


def _audit_payload(payload: Any) -> str:
    """The payload as JSON text (encoded once; the audit store writes it as is)."""
    sealed = _SEALED_FIELDS.get(type(payload))
    if sealed is None:
        sealed = _SEALED_FIELDS[type(payload)] = tuple(
            f.name for f in msgspec.structs.fields(type(payload))
            if ev.SealedSecret in (f.type, *getattr(f.type, "__args__", ())))
    if sealed:
        # Ciphertext is safe to keep, but the audit trail only needs which key sealed it
        # (a secret's value, a Hyperdrive config's origin and pooler password).
        data: dict[str, Any] = msgspec.to_builtins(payload)
        for name in sealed:
            value = getattr(payload, name)
            if value is not None:
                data[name] = {"key_id": value.key_id, "algorithm": value.algorithm}
        return dumps(data)
    return _json.encode(payload).decode()


# Per payload type: the fields holding a SealedSecret (found once per type).
_SEALED_FIELDS: dict[type[Any], tuple[str, ...]] = {}
