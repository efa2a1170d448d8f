"""Prometheus metrics of the queue consumer, in a registry the service owns (docs/metrics.md)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.fairshare import FairShareMetrics

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class QueueMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.produced = Counter("wdl_queue_messages_produced_total",
                                "messages appended by producers", ["namespace"], registry=r)
        self.batches = Counter("wdl_queue_batches_total", "batches run, by workerd outcome",
                               ["namespace", "outcome"], registry=r)
        self.acked = Counter("wdl_queue_messages_acked_total", "messages acknowledged",
                             ["namespace"], registry=r)
        self.retried = Counter("wdl_queue_messages_retried_total",
                               "messages appended again for another attempt", ["namespace"],
                               registry=r)
        self.dead_lettered = Counter("wdl_queue_messages_dead_lettered_total",
                                     "messages moved to a dead-letter queue", ["namespace"],
                                     registry=r)
        self.dropped = Counter("wdl_queue_messages_dropped_total",
                               "messages dropped, by reason", ["namespace", "reason"],
                               registry=r)
        self.undelivered = Counter("wdl_queue_messages_undelivered_total",
                                   "messages of batches the platform could not run (tried "
                                   "again, no attempt counted)", ["namespace"], registry=r)
        self.failures = Counter("wdl_queue_batch_failures_total",
                                "failed attempts without a queue() outcome, by reason "
                                "(timeout, a broken connection, gateway_error, undecodable: "
                                "per message)", ["namespace", "reason"], registry=r)
        self.refused = Counter("wdl_queue_sends_refused_total",
                               "sends refused, by reason (backlog: the queue's bound)",
                               ["namespace", "reason"], registry=r)
        self.backlog = Gauge("wdl_queue_backlog_bytes",
                             "bytes of messages held (read, not finished) on this replica, "
                             "per namespace", ["namespace"], registry=r)
        self.fairshare = FairShareMetrics(r)
        self.latency = Histogram("wdl_queue_delivery_seconds",
                                 "first send to the end of a delivery", buckets=BUCKETS,
                                 registry=r)
        self.handler_seconds = Histogram("wdl_queue_handler_seconds",
                                         "one queue() invocation through the gateway",
                                         buckets=BUCKETS, registry=r)
