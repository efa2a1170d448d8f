"""The deterministic fold: each event becomes a verdict and a set of effects.

- core.py: Reject, Verdict, FoldCore (entry, dispatch, idempotency, the
  dedupe window) and PartitionBatch;
- one module per aggregate kind with its state, handlers and rendering:
  namespaces, workers, secrets, hosts, leases, cron, tokens;
- audit.py: the audit and history rows of every folded event;
- partition.py: PartitionFold (the rules classes combined) and Fold.
"""

from projections.fold.audit import audit
from projections.fold.core import VERDICT_WINDOW, FoldCore, PartitionBatch, Reject, Verdict
from projections.fold.cron import CRON_RUNS_KEPT, CronRules
from projections.fold.encoding import dumps
from projections.fold.hosts import HostRules, HostState
from projections.fold.leases import LeaseRules, LeaseState
from projections.fold.namespaces import NamespaceRules, NamespaceState
from projections.fold.partition import Fold, PartitionFold
from projections.fold.secrets import SecretRules
from projections.fold.tokens import TokenRules, TokenState
from projections.fold.workers import PROMOTION_HISTORY, VersionState, WorkerRules, WorkerState

__all__ = [
    "CRON_RUNS_KEPT",
    "PROMOTION_HISTORY",
    "VERDICT_WINDOW",
    "CronRules",
    "Fold",
    "FoldCore",
    "HostRules",
    "HostState",
    "LeaseRules",
    "LeaseState",
    "NamespaceRules",
    "NamespaceState",
    "PartitionBatch",
    "PartitionFold",
    "Reject",
    "SecretRules",
    "TokenRules",
    "TokenState",
    "Verdict",
    "VersionState",
    "WorkerRules",
    "WorkerState",
    "audit",
    "dumps",
]
