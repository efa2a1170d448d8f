"""Prometheus metrics of a projector, in a registry owned by the process (no globals)."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from projections.fold import PartitionBatch


class ProjectorMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.applied = Gauge("wdl_projector_applied_offset",
                             "Next log offset the projector will apply, per partition",
                             ["partition"], registry=self.registry)
        self.log_end = Gauge("wdl_projector_log_end_offset",
                             "End offset of the log, per partition", ["partition"],
                             registry=self.registry)
        self.lag = Gauge("wdl_projector_lag_events", "Log end minus applied offset",
                         ["partition"], registry=self.registry)
        self.events = Counter("wdl_projector_events", "Events folded (accepted, rejected or "
                              "dead-lettered)", registry=self.registry)
        self.dead_letters = Counter("wdl_projector_dead_letters",
                                    "Events that could not be decoded or applied",
                                    registry=self.registry)
        self.batch_seconds = Histogram("wdl_projector_batch_seconds",
                                       "Time to fold and write one batch",
                                       registry=self.registry,
                                       buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                                0.5, 1, 2.5, 5))

    def observe_batch(self, folded: Mapping[int, PartitionBatch], count: int, dead: int,
                      seconds: float) -> None:
        for partition, batch in folded.items():
            self.applied.labels(str(partition)).set(batch.end)
        self.events.inc(count)
        if dead:
            self.dead_letters.inc(dead)
        self.batch_seconds.observe(seconds)

    def observe_log_end(self, ends: Mapping[int, int], applied: Mapping[int, int]) -> None:
        for partition, end in ends.items():
            self.log_end.labels(str(partition)).set(end)
            self.lag.labels(str(partition)).set(max(0, end - applied.get(partition, 0)))
