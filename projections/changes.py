"""A batch of effects, folded in Python before it reaches a store.

Writing one command per event cannot keep up with a rebuild (redis-py issues
~34k commands/s), so the fold records the *final* value of every touched
hash field and a store writes each touched key once per batch. Effects are
level-triggered: a field is set to a value or removed, never incremented, so
re-applying a batch converges to the same state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Changes:
    # key -> field -> value (None removes the field)
    fields: dict[str, dict[str, str | None]] = field(default_factory=dict)
    # keys removed whole; applied before `fields`, which may re-create them
    dropped: set[str] = field(default_factory=set)
    # next offset to read, per partition, after this batch
    positions: dict[int, int] = field(default_factory=dict)
    # rows for the audit store, in log order
    audit: list[dict[str, Any]] = field(default_factory=list)
    deployments: list[dict[str, Any]] = field(default_factory=list)
    lease_history: list[dict[str, Any]] = field(default_factory=list)
    dead_letters: list[dict[str, Any]] = field(default_factory=list)

    # Called a few times per folded event: look up before creating, so the
    # common case (the key is already there) allocates no throwaway dict.
    def set(self, key: str, name: str, value: str) -> None:
        fields = self.fields.get(key)
        if fields is None:
            fields = self.fields[key] = {}
        fields[name] = value

    def delete(self, key: str, name: str) -> None:
        fields = self.fields.get(key)
        if fields is None:
            fields = self.fields[key] = {}
        fields[name] = None

    def drop(self, key: str) -> None:
        self.fields.pop(key, None)
        self.dropped.add(key)

    def __bool__(self) -> bool:
        return bool(self.fields or self.dropped or self.positions or self.audit
                    or self.dead_letters)

    def merge(self, other: Changes) -> None:
        """Add another partition's effects; partitions never share a field."""
        for key in other.dropped:
            self.drop(key)
        for key, fields in other.fields.items():
            self.fields.setdefault(key, {}).update(fields)
        self.positions.update(other.positions)
        self.audit.extend(other.audit)
        self.deployments.extend(other.deployments)
        self.lease_history.extend(other.lease_history)
        self.dead_letters.extend(other.dead_letters)

    def event_count(self) -> int:
        return len(self.audit) + len(self.dead_letters)
