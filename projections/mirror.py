"""The in-memory mirror of a rebuild: the expected state to check a shadow against.

Used by the sequential rebuild (rebuild.py) and by each parallel worker
(parallel.py), so neither imports the other for it.
"""

from __future__ import annotations

from collections.abc import Mapping

from projections.audit_store import AuditDigest
from projections.fold import PartitionBatch
from projections.memory_store import MemoryProjectionStore


class Mirror:
    """Collects the expected state of a rebuild in memory to check the shadow against."""

    def __init__(self) -> None:
        self.store = MemoryProjectionStore()
        self.audit = AuditDigest()
        self.generation = 0

    async def start(self) -> None:
        self.generation = await self.store.current_generation()

    async def __call__(self, folded: dict[int, PartitionBatch]) -> None:
        for batch in folded.values():
            await self.store.apply(self.generation, batch.changes, await self.store.applied(
                self.generation))
            self.audit.add_changes(batch.changes)

    def apply_positions(self, positions: Mapping[int, int]) -> None:
        self.audit.positions(positions)
