"""The fold's core: verdicts, the per-partition entry point, dispatch and dedupe.

The log is the arbiter (DESIGN invariant 2): an event carries the
precondition its writer believed, and this fold accepts or rejects it using
only the state built from earlier events *of the same partition*. Placement
puts every event of a namespace on one partition, and hosts, leases and
tokens are keyed by themselves, so no rule ever needs another partition and
replays reach the same verdicts whatever order partitions are read in.

Lease expiry is judged against the event's own `occurred_at`, never the
wall clock, for the same reason.

`FoldCore` knows no aggregate. Each aggregate module (namespaces.py,
workers.py, ...) subclasses it with its state, its handlers and its
rendering, and registers them with two class attributes:

- `HANDLERS`: payload type -> name of the method that folds it;
- `VERSIONS`: aggregate kind -> name of the method giving an aggregate's version.

`partition.PartitionFold` combines them; the tables are merged once per class
and bound once per partition, so an event costs one dict lookup to dispatch.
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import msgspec

from eventlog.envelope import Envelope
from eventlog.port import Record
from projections import keys
from projections.changes import Changes
from projections.fold.audit import audit
from projections.fold.encoding import dumps

# Verdicts and idempotency keys stay in the projection for this many of the
# most recent events of each partition; the audit table keeps all of them.
VERDICT_WINDOW = 20_000

Handler = Callable[[Any, Envelope, Changes], int]

_encode_uuid = msgspec.json.Encoder().encode


def _uuid_text(value: Any) -> str:
    """str(uuid) in C: the JSON string msgspec renders is its canonical text."""
    if type(value) is uuid.UUID:
        return _encode_uuid(value)[1:-1].decode()
    return str(value)


class Reject(Exception):
    """A precondition failed: the event is recorded with this reason and has no effect."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(slots=True)
class Verdict:
    event_id: str
    accepted: bool
    code: str | None
    message: str
    partition: int
    offset: int
    aggregate_version: int

    def to_json(self) -> str:
        if self.accepted:
            # Most verdicts: only integers vary, so format the exact bytes the
            # sorted-key encoder gives (tests/unit/test_fold.py checks they match).
            return (f'{{"accepted":true,"aggregate_version":{self.aggregate_version:d},'
                    f'"code":null,"message":"accepted","offset":{self.offset:d},'
                    f'"partition":{self.partition:d}}}') if self.message == "accepted" \
                and self.code is None else self._encoded()
        return self._encoded()

    def _encoded(self) -> str:
        return dumps({
            "accepted": self.accepted, "code": self.code, "message": self.message,
            "partition": self.partition, "offset": self.offset,
            "aggregate_version": self.aggregate_version,
        })


class FoldCore:
    """State of one partition, rebuilt only from that partition's events."""

    # Registrations of one aggregate module (see the module docstring).
    HANDLERS: ClassVar[Mapping[type[Any], str]] = {}
    VERSIONS: ClassVar[Mapping[str, str]] = {}
    # Merged over the class's MRO by __init_subclass__.
    _handler_names: ClassVar[dict[type[Any], str]] = {}
    _version_names: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[type[Any], str] = {}
        versions: dict[str, str] = {}
        owners: dict[object, str] = {}
        for klass in reversed(cls.__mro__):
            for table, merged in (("HANDLERS", handlers), ("VERSIONS", versions)):
                for key, name in vars(klass).get(table, {}).items():
                    if key in merged:
                        raise TypeError(f"{klass.__name__} registers {key!r} again "
                                        f"(already registered by {owners[key]})")
                    merged[key] = name
                    owners[key] = klass.__name__
        cls._handler_names = handlers
        cls._version_names = versions

    def __init__(self, partition: int) -> None:
        self.partition = partition
        self.next_offset = 0
        self._recent: deque[tuple[str, str | None]] = deque()
        self._recent_ids: set[str] = set()
        self._recent_idem: dict[str, str] = {}
        self._handlers: dict[type[Any], Handler] = {
            cls: getattr(self, name) for cls, name in self._handler_names.items()
        }
        self._versions: dict[str, Callable[[str], int]] = {
            kind: getattr(self, name) for kind, name in self._version_names.items()
        }

    # ------------------------------------------------------------------ entry

    def apply(self, record: Record, out: Changes) -> Verdict | None:
        """Fold one record; returns its verdict (None for a dead letter)."""
        partition, offset = record.position
        if offset < self.next_offset:
            return None  # already folded: replays and redeliveries converge
        self.next_offset = offset + 1
        out.positions[partition] = offset + 1
        envelope = record.envelope
        if envelope is None:
            reason = str(record.error) if record.error is not None else "undecodable"
            out.dead_letters.append({
                "log_partition": partition, "log_offset": offset, "raw": record.raw,
                "reason": reason, "code": getattr(record.error, "code", "undecodable"),
                "log_timestamp_ms": record.timestamp_ms,
            })
            out.set(keys.dead_letters(partition), str(offset), dumps({"reason": reason}))
            return None
        try:
            return self._apply(envelope, partition, offset, out)
        except Exception as exc:
            # A bug or an impossible payload: dead-letter it with the reason.
            # _apply checks every rule before the first effect, so nothing
            # from this event is in `out` yet.
            out.dead_letters.append({
                "log_partition": partition, "log_offset": offset, "raw": record.raw,
                "reason": f"{type(exc).__name__}: {exc}", "code": "apply_failed",
                "log_timestamp_ms": record.timestamp_ms,
            })
            out.set(keys.dead_letters(partition), str(offset),
                    dumps({"reason": f"{type(exc).__name__}: {exc}"}))
            return None

    def _apply(self, env: Envelope, partition: int, offset: int, out: Changes) -> Verdict:
        event_id = _uuid_text(env.event_id)
        payload = env.payload
        handler = self._handlers.get(type(payload))
        agg_version = self._aggregate_version(env)
        idem = env.idempotency_key
        if event_id in self._recent_ids:
            verdict = Verdict(event_id, False, "duplicate_event",
                              "an event with this id was already folded", partition, offset,
                              agg_version)
            audit(env, verdict, out)
            return verdict  # the first copy's verdict stays in place
        if handler is None:
            raise ValueError(f"no fold rule for {env.type}")
        if idem is not None and idem in self._recent_idem:
            original = self._recent_idem[idem]
            verdict = Verdict(event_id, False, "duplicate_idempotency_key",
                              f"idempotency key already used by event {original}",
                              partition, offset, agg_version)
        else:
            try:
                expected = env.precondition.expected_version
                if expected is not None and expected != agg_version:
                    raise Reject("stale_version",
                                 f"{env.aggregate_kind} {env.aggregate_id} is at version "
                                 f"{agg_version}, the event expected {expected}")
                new_version = handler(payload, env, out)
                verdict = Verdict(event_id, True, None, "accepted", partition, offset,
                                  new_version)
                # Every aggregate's version, even after its document is gone (purge,
                # release), so writers can always state the version they expect.
                out.set(keys.AGGREGATES, f"{env.aggregate_kind}:{env.aggregate_id}",
                        str(new_version))
            except Reject as rej:
                verdict = Verdict(event_id, False, rej.code, rej.message, partition, offset,
                                  agg_version)
        self._remember(event_id, idem, out)
        out.set(keys.verdicts(partition), event_id, verdict.to_json())
        audit(env, verdict, out)
        return verdict

    def _remember(self, event_id: str, idem: str | None, out: Changes) -> None:
        self._recent.append((event_id, idem))
        self._recent_ids.add(event_id)
        if idem is not None and idem not in self._recent_idem:
            self._recent_idem[idem] = event_id
            out.set(keys.idempotency(self.partition), idem, event_id)
        if len(self._recent) > VERDICT_WINDOW:
            old_id, old_idem = self._recent.popleft()
            self._recent_ids.discard(old_id)
            out.delete(keys.verdicts(self.partition), old_id)
            if old_idem is not None and self._recent_idem.get(old_idem) == old_id:
                del self._recent_idem[old_idem]
                out.delete(keys.idempotency(self.partition), old_idem)

    def _aggregate_version(self, env: Envelope) -> int:
        lookup = self._versions.get(env.aggregate_kind)
        return 0 if lookup is None else lookup(env.aggregate_id)


@dataclass(slots=True)
class PartitionBatch:
    """Effects of one partition's records in [start, end) (offsets)."""

    start: int
    end: int
    changes: Changes
