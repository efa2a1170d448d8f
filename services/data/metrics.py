"""Prometheus metrics of the data service, in a registry the service owns.

Tenant labels go through `services.observability.labels`: at most N
(namespace, worker) pairs and N namespaces get their own series, the rest
share `_other` (docs/metrics.md).
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.observability.labels import NamespaceLabels, WorkerLabels
from services.tail.events import TailEvent

# workerd's EventOutcome names; anything else is `other`, so the label stays bounded.
OUTCOMES = frozenset({"ok", "exception", "exceededCpu", "exceededMemory", "canceled",
                      "unknown", "killSwitch", "daemonDown", "scriptNotFound", "loadShed",
                      "responseStreamDisconnected"})
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0)
_CODE = re.compile(r"[A-Za-z0-9_]{1,48}")
KINDS = frozenset({"kv", "r2"})


def error_code(code: object) -> str:
    """An error code label: the handlers' own codes are a fixed set; anything odd is `other`."""
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "other"


class DataMetrics:
    def __init__(self, registry: CollectorRegistry | None = None, *,
                 workers: WorkerLabels | None = None,
                 namespaces: NamespaceLabels | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.workers = workers or WorkerLabels()
        self.namespaces = namespaces or NamespaceLabels()
        r = self.registry
        self.egress_refusals = Counter(
            "wdl_egress_refusals", "Tenant fetches refused by the namespace egress policy",
            ["namespace"], registry=r)
        self.binding_operations = Counter(
            "wdl_binding_operations", "KV and R2 binding calls served by the data service",
            ["namespace", "kind", "op"], registry=r)
        self.binding_errors = Counter(
            "wdl_binding_errors", "KV and R2 binding calls answered with an error",
            ["namespace", "kind", "op", "code"], registry=r)
        self.requests = Counter(
            "wdl_worker_requests", "Tenant invocations, from the gateway's trace events",
            ["namespace", "worker", "status_class", "outcome"], registry=r)
        self.exceptions = Counter(
            "wdl_worker_exceptions", "Exceptions in tenant traces (uncaught errors, unhandled "
            "rejections)", ["namespace", "worker"], registry=r)
        self.duration = Histogram(
            "wdl_worker_request_duration_seconds",
            "Wall time of tenant invocations, from the event's start to its trace",
            ["namespace", "worker"], buckets=DURATION_BUCKETS, registry=r)
        self.tail_dropped = Counter(
            "wdl_tail_events_dropped",
            "Trace events lost: gateway (buffer full, post failed), subscriber (slow "
            "client), invalid (malformed)", ["stage"], registry=r)
        self.tail_subscribers = Gauge("wdl_tail_subscribers", "Open live tail streams",
                                      registry=r)

    # -- egress ------------------------------------------------------------------------

    def egress_refused(self, namespace: object) -> None:
        self.egress_refusals.labels(self.namespaces.labels(namespace)).inc()

    # -- bindings ----------------------------------------------------------------------

    def binding_call(self, namespace: str, kind: str, op: str, code: str | None) -> None:
        ns = self.namespaces.labels(namespace)
        self.binding_operations.labels(ns, kind, op).inc()
        if code is not None:
            self.binding_errors.labels(ns, kind, op, error_code(code)).inc()

    # -- trace events (services.tail.routes.TailObserver) ------------------------------

    def observe(self, event: TailEvent) -> None:
        ns, worker = self.workers.labels(event.namespace, event.worker)
        outcome = event.outcome if event.outcome in OUTCOMES else "other"
        self.requests.labels(ns, worker, event.status_class, outcome).inc()
        if event.exceptions:
            self.exceptions.labels(ns, worker).inc(len(event.exceptions))
        if event.duration_ms is not None:
            self.duration.labels(ns, worker).observe(event.duration_ms / 1000)

    def dropped(self, stage: str, count: int) -> None:
        self.tail_dropped.labels(stage).inc(count)
