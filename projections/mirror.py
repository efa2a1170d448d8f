"""What a replay says the projections hold, kept as hashes: the check of a rebuild and of verify.

A replay's expectation used to be a second full store (every rendered value
in memory) that was then dumped and compared with a dump of the live one.
`Expectation` keeps, per key and field, only a 16-byte hash of the value the
fold set last, plus the audit digest's chains, all from the same fold; `compare`
then streams the live generation once in sorted order, computing its digest
(the same `digest_of` value as a full dump) and naming the fields that differ.

Used by the sequential rebuild and verify (rebuild.py) and by each parallel
worker (parallel.py), so neither imports the other for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field

from eventlog.port import EventLog
from projections import keys
from projections.audit_store import AuditDigest
from projections.changes import Changes
from projections.fold import Fold, PartitionBatch
from projections.redis_store import RedisProjectionStore
from projections.store import ProjectionStore

Hashes = dict[str, dict[str, bytes]]


def value_hash(value: str) -> bytes:
    return hashlib.blake2b(value.encode(), digest_size=16).digest()


class Expectation:
    """The expected fields of a projection (hashed) and of its audit tables (chained)."""

    def __init__(self) -> None:
        self.fields: Hashes = {}
        self.audit = AuditDigest()
        self.positions: dict[int, int] = {}

    def add(self, changes: Changes, *, redis: bool = True, audit: bool = True) -> None:
        if audit:
            self.audit.add_changes(changes)
        if not redis:
            return
        data = self.fields
        for key in changes.dropped:
            data.pop(key, None)
        blake = hashlib.blake2b
        for key, fields in changes.fields.items():
            target = data.get(key)
            if target is None:
                target = data[key] = {}
            for name, value in fields.items():
                if value is None:
                    target.pop(name, None)
                else:
                    target[name] = blake(value.encode(), digest_size=16).digest()
            if not target:
                del data[key]
        self.positions.update(changes.positions)

    def finish(self) -> Hashes:
        """The expected hashes including the applied positions (as a store writes them)."""
        if self.positions:
            applied = self.fields.setdefault(keys.APPLIED, {})
            for partition, offset in self.positions.items():
                applied[str(partition)] = value_hash(str(offset))
        return self.fields

    def merge(self, other: Hashes) -> None:
        # Partitions never share a field, so merging per field loses nothing.
        for key, fields in other.items():
            target = self.fields.get(key)
            if target is None:
                self.fields[key] = fields
            else:
                target.update(fields)


class Mirror:
    """A rebuild's `on_batch`: the expectation of everything the rebuild wrote."""

    def __init__(self) -> None:
        self.expected = Expectation()

    async def start(self) -> None:
        pass

    async def __call__(self, folded: dict[int, PartitionBatch]) -> None:
        for batch in folded.values():
            self.expected.add(batch.changes)

    @property
    def audit(self) -> AuditDigest:
        return self.expected.audit


@dataclass
class Comparison:
    digest: str  # digest_of() the live generation
    expected_digest: str  # the same when nothing differs
    differences: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.differences


async def compare(live: AsyncIterator[tuple[str, Mapping[str, str]]], expected: Hashes,
                  limit: int = 10) -> Comparison:
    """Stream the live generation (keys in sorted order) against expected hashes.

    The digest is `store.digest_of` of the live data, computed without
    holding it; differences name key and field with the live value (the
    replay's is known only by its hash).
    """
    h = hashlib.sha256()
    blake = hashlib.blake2b
    found: list[tuple[str, str, str | None, bool]] = []
    keep = max(limit * 100, 1000)
    seen: set[str] = set()
    async for key, fields in live:
        if not fields:
            continue
        seen.add(key)
        h.update(key.encode())
        h.update(b"\x00")
        want = expected.get(key) or {}
        for name in sorted(fields):
            encoded = fields[name].encode()
            h.update(name.encode())
            h.update(b"\x01")
            h.update(encoded)
            h.update(b"\x02")
            expected_hash = want.get(name)
            if expected_hash != blake(encoded, digest_size=16).digest() and len(found) < keep:
                found.append((key, name, fields[name], expected_hash is not None))
        h.update(b"\x03")
        found.extend((key, name, None, True) for name in want if name not in fields)
    for key in expected.keys() - seen:
        found.extend((key, name, None, True) for name in expected[key])
    digest = h.hexdigest()
    if not found:
        return Comparison(digest, digest)
    found.sort(key=lambda d: (d[0], d[1]))
    return Comparison(digest, _hashes_digest(expected), [_difference(*d) for d in found[:limit]])


def _hashes_digest(expected: Hashes) -> str:
    """Stands for the replay's digest when it differs (its values are known by hash only)."""
    h = hashlib.sha256(b"replay-hashes\x00")
    for key in sorted(expected):
        h.update(key.encode() + b"\x00")
        for name in sorted(expected[key]):
            h.update(name.encode() + b"\x01" + expected[key][name] + b"\x02")
    return h.hexdigest()


def _difference(key: str, name: str, live: str | None, replay_has: bool) -> str:
    shown = "<missing>" if live is None else (live if len(live) <= 80 else live[:80] + "…")
    replay = ("<missing>" if not replay_has else "<a value>" if live is None
              else "<another value>")
    return f"{key} [{name}]: live={shown} replay={replay}"


def _rows_before(changes: Changes, cut: Mapping[int, int]) -> Changes:
    """Only the audit rows of events before `cut` (per partition)."""
    out = Changes()
    for name in ("audit", "deployments", "lease_history", "dead_letters"):
        rows = getattr(changes, name)
        setattr(out, name, [r for r in rows
                            if r["log_offset"] < cut.get(r["log_partition"], 0)])
    return out


async def replay(log: EventLog, redis_until: Mapping[int, int],
                 audit_until: Mapping[int, int] | None, *,
                 partitions: Iterable[int] | None = None, batch_size: int = 5000,
                 progress: Callable[[int], None] | None = None) -> Expectation:
    """One fold of the log giving the expectation of both projections.

    The projection store and the audit store may stand at different
    positions; records are read once up to the further of the two, and each
    store's expectation takes only the events before its own position.
    """
    from projections.projector import relaxed_gc

    owned = sorted(range(log.partitions) if partitions is None else partitions)
    audit_cut = dict(audit_until) if audit_until is not None else None
    until = {p: max(redis_until.get(p, 0), 0 if audit_cut is None else audit_cut.get(p, 0))
             for p in owned}
    expected = Expectation()
    fold = Fold()
    same = audit_cut is not None and all(
        audit_cut.get(p, 0) == redis_until.get(p, 0) for p in owned)
    batches = log.read_batches(dict.fromkeys(owned, 0), until=until, max_batch=batch_size)
    with relaxed_gc():
        try:
            async for records in batches:
                first = [r for r in records
                         if r.position.offset < redis_until.get(r.position.partition, 0)]
                rest = [] if len(first) == len(records) else [
                    r for r in records
                    if r.position.offset >= redis_until.get(r.position.partition, 0)]
                for part, redis in ((first, True), (rest, False)):
                    if not part:
                        continue
                    for batch in fold.apply_batch(part).values():
                        if audit_cut is None:
                            expected.add(batch.changes, audit=False, redis=redis)
                        elif same:
                            expected.add(batch.changes, redis=redis)
                        else:
                            expected.add(batch.changes, audit=False, redis=redis)
                            expected.audit.add_changes(_rows_before(batch.changes, audit_cut))
                if progress is not None:
                    progress(len(records))
        finally:
            await batches.aclose()
    return expected


def live_items(store: ProjectionStore, generation: int,
               ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
    """A generation's keys in sorted order: streamed from Redis, else from a dump."""
    if isinstance(store, RedisProjectionStore):
        return store.iter_sorted(generation)
    return _dumped(store, generation)


async def _dumped(store: ProjectionStore, generation: int,
                  ) -> AsyncIterator[tuple[str, Mapping[str, str]]]:
    dump = await store.dump(generation)
    for key in sorted(dump):
        yield key, dump[key]


def merge_hashes(parts: Iterable[Hashes]) -> Expectation:
    out = Expectation()
    for part in parts:
        out.merge(part)
    return out
