"""Prometheus metrics of the data service, in a registry the service owns.

Tenant labels go through `services.observability.labels`: at most N
(namespace, worker) pairs and N namespaces get their own series, the rest
share `_other` (docs/metrics.md).
"""

from __future__ import annotations

import re

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.fairshare import FairShareMetrics
from services.observability.labels import NamespaceLabels, WorkerLabels

# workerd's EventOutcome names; anything else is `other`, so the label stays bounded.
OUTCOMES = frozenset({"ok", "exception", "exceededCpu", "exceededMemory", "canceled",
                      "unknown", "killSwitch", "daemonDown", "scriptNotFound", "loadShed",
                      "responseStreamDisconnected"})
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                    10.0, 30.0)
_CODE = re.compile(r"[A-Za-z0-9_]{1,48}")
KINDS = frozenset({"kv", "r2", "ratelimit"})
# A refused connect()'s policy and reason (workerd/gateway/sockets.js reasonClass).
SOCKET_POLICIES = frozenset({"deny", "public", "allow"})
SOCKET_REASONS = frozenset({"deny", "not_allowed", "port", "special_address", "malformed",
                            "limit", "outbound_worker", "hyperdrive",
                            "subrequests"})
TAIL_DROP_REASONS = frozenset({"overflow", "no_consumer", "no_handler", "failed", "invalid"})


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
        # engine "tails": tails each namespace holds, and those refused at its share.
        self.fairshare = FairShareMetrics(r, namespaces=self.namespaces)
        self.egress_refusals = Counter(
            "wdl_egress_refusals", "Tenant fetches refused by the namespace egress policy",
            ["namespace"], registry=r)
        self.socket_refusals = Counter(
            "wdl_egress_socket_refusals", "Tenant connect()s refused by the namespace egress "
            "policy or its connection bound", ["namespace", "policy", "reason"], registry=r)
        self.binding_operations = Counter(
            "wdl_binding_operations", "KV, R2 and rate limit binding calls served by the "
            "data service",
            ["namespace", "kind", "op"], registry=r)
        self.binding_errors = Counter(
            "wdl_binding_errors", "KV and R2 binding calls answered with an error",
            ["namespace", "kind", "op", "code"], registry=r)
        self.requests = Counter(
            "wdl_worker_requests", "Tenant invocations, as the gateway counted them",
            ["namespace", "worker", "status_class", "outcome"], registry=r)
        self.exceptions = Counter(
            "wdl_worker_exceptions", "Tenant invocations that ended in an exception (the "
            "gateway caught it)", ["namespace", "worker"], registry=r)
        self.duration = Histogram(
            "wdl_worker_request_duration_seconds",
            "Wall time of tenant invocations, measured by the gateway around the call",
            ["namespace", "worker"], buckets=DURATION_BUCKETS, registry=r)
        self.tail_dropped = Counter(
            "wdl_tail_events_dropped",
            "Trace events lost: gateway (buffer full, post failed), subscriber (slow "
            "client), invalid (malformed)", ["stage"], registry=r)
        self.websockets = Counter(
            "wdl_gateway_websockets", "WebSocket upgrades tenant workers accepted (101 "
            "answers), as the gateway counted them", ["namespace", "worker"], registry=r)
        self.invocations_dropped = Counter(
            "wdl_gateway_invocations_dropped",
            "Invocations a gateway counted but could not report (its aggregate was full or "
            "a flush failed)", registry=r)
        self.tail_events = Counter(
            "wdl_tail_events", "Trace events received from gateways (only workers someone "
            "tails have tail consumers)", registry=r)
        # Tail Workers (workerd/gateway/tail.js), as gateways report them with their
        # invocation counts (services/data/invocations.py).
        self.tail_consumer_delivered = Counter(
            "wdl_tail_consumer_events_delivered",
            "Trace events handed to a Tail Worker's tail()", registry=r)
        self.tail_consumer_dropped = Counter(
            "wdl_tail_consumer_events_dropped",
            "Trace events a Tail Worker did not get: overflow (a bound of the gateway's "
            "outbox), no_consumer (no active version), no_handler (no tail handler), failed "
            "(tail() threw or timed out), invalid", ["reason"], registry=r)
        self.tail_subscribers = Gauge("wdl_tail_subscribers", "Open live tail streams",
                                      registry=r)

    # -- egress ------------------------------------------------------------------------

    def egress_refused(self, namespace: object) -> None:
        self.egress_refusals.labels(self.namespaces.labels(namespace)).inc()

    def socket_refused(self, namespace: object, policy: object, reason: object) -> None:
        p = policy if policy in SOCKET_POLICIES else "other"
        why = reason if reason in SOCKET_REASONS else "other"
        self.socket_refusals.labels(self.namespaces.labels(namespace), p, why).inc()

    # -- bindings ----------------------------------------------------------------------

    def binding_call(self, namespace: str, kind: str, op: str, code: str | None) -> None:
        ns = self.namespaces.labels(namespace)
        self.binding_operations.labels(ns, kind, op).inc()
        if code is not None:
            self.binding_errors.labels(ns, kind, op, error_code(code)).inc()

    # -- invocations, as gateways count them (services/data/invocations.py) ------------

    def invocations(self, namespace: str, worker: str, requests: list[tuple[str, str, int]],
                    exceptions: int, buckets: list[int], seconds: float,
                    websockets: int = 0) -> None:
        """One worker's counts from one gateway flush. `buckets`: how many durations
        fell in each of DURATION_BUCKETS (and +Inf), not cumulative; `seconds` their sum."""
        ns, w = self.workers.labels(namespace, worker)
        for status_class, outcome, n in requests:
            self.requests.labels(ns, w, status_class,
                                 outcome if outcome in OUTCOMES else "other").inc(n)
        if exceptions:
            self.exceptions.labels(ns, w).inc(exceptions)
        if websockets:
            self.websockets.labels(ns, w).inc(websockets)
        if any(buckets):
            # prometheus_client has no "observe n at once"; a flush carries thousands.
            child = self.duration.labels(ns, w)
            for i, n in enumerate(buckets):
                if n:
                    child._buckets[i].inc(n)
            child._sum.inc(seconds)

    def tail_consumers(self, delivered: int, dropped: dict[str, int]) -> None:
        if delivered:
            self.tail_consumer_delivered.inc(delivered)
        for reason, n in dropped.items():
            self.tail_consumer_dropped.labels(
                reason if reason in TAIL_DROP_REASONS else "other").inc(n)

    def received(self, count: int) -> None:
        self.tail_events.inc(count)

    def dropped(self, stage: str, count: int) -> None:
        self.tail_dropped.labels(stage).inc(count)
