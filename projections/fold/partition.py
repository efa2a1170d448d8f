"""The partition fold assembled from one rules class per aggregate kind, and `Fold`.

Adding an aggregate kind: write its module (a FoldCore subclass with its
state, HANDLERS and VERSIONS) and add the class to PartitionFold's bases.
A rules class that uses another's state or rendering subclasses it (workers
extend namespaces, secrets extend workers, cron extends leases); list it
before what it extends.
"""

from __future__ import annotations

from eventlog.port import Record
from projections.changes import Changes
from projections.fold.containment import ContainmentRules
from projections.fold.core import PartitionBatch, Verdict
from projections.fold.cron import CronRules
from projections.fold.d1 import D1Rules
from projections.fold.hosts import HostRules
from projections.fold.hyperdrive import HyperdriveRules
from projections.fold.kv import KvRules
from projections.fold.leases import LeaseRules
from projections.fold.namespaces import NamespaceRules
from projections.fold.policies import PolicyRules
from projections.fold.quarantine import QuarantineRules
from projections.fold.queues import QueueRules
from projections.fold.r2 import R2Rules
from projections.fold.secrets import SecretRules
from projections.fold.tokens import TokenRules
from projections.fold.workers import WorkerRules


class PartitionFold(
    HyperdriveRules,
    KvRules,
    R2Rules,
    D1Rules,
    QueueRules,
    QuarantineRules,
    SecretRules,
    WorkerRules,
    PolicyRules,
    ContainmentRules,
    NamespaceRules,
    CronRules,
    LeaseRules,
    HostRules,
    TokenRules,
):
    """State of one partition, rebuilt only from that partition's events."""


class Fold:
    """All partitions' states; routes each record to its partition's fold."""

    def __init__(self) -> None:
        self.partitions: dict[int, PartitionFold] = {}

    def partition(self, partition: int) -> PartitionFold:
        fold = self.partitions.get(partition)
        if fold is None:
            fold = self.partitions[partition] = PartitionFold(partition)
        return fold

    def apply(self, record: Record, out: Changes) -> Verdict | None:
        return self.partition(record.position.partition).apply(record, out)

    def apply_batch(self, records: list[Record]) -> dict[int, PartitionBatch]:
        """Fold records; effects are kept per partition with the range they cover."""
        out: dict[int, PartitionBatch] = {}
        for record in records:
            p = record.position.partition
            batch = out.get(p)
            fold = self.partition(p)
            if batch is None:
                batch = out[p] = PartitionBatch(fold.next_offset, fold.next_offset, Changes())
            fold.apply(record, batch.changes)
            batch.end = fold.next_offset
        return out
