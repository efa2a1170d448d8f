"""Builders of realistic events and records for tests (no I/O)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from typing import Any

from eventlog import events as ev
from eventlog.codec import DEFAULT_CODEC
from eventlog.envelope import Envelope
from eventlog.partitioning import partition_for
from eventlog.port import Position, Record

T0 = 1_790_000_000_000  # a fixed clock: folds must not depend on the wall clock


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def upload(ns: str, worker: str, version: str, *, crons: Sequence[str] = (),
           vars_: dict[str, str] | None = None) -> ev.WorkerVersionUploaded:
    body = f"export default {{ fetch() {{ return new Response('{version}') }} }}"
    return ev.WorkerVersionUploaded(
        namespace=ns, worker=worker, version_id=version, bundle_sha256=digest(body),
        bundle_size=len(body),
        modules=(ev.ModuleRef(name="index.js", type="esm", sha256=digest(body),
                              size=len(body)),),
        main_module="index.js", compatibility_date="2025-06-01",
        vars=vars_ or {}, cron_triggers=tuple(crons),
    )


def sealed() -> ev.SealedSecret:
    return ev.SealedSecret(key_id="k1", wrapped_key=b"w" * 40, nonce=b"n" * 12,
                           ciphertext=b"c" * 32)


def env(payload: Any, *, at: int = T0, actor: str = "tester", **kw: Any) -> Envelope:
    return Envelope.new(payload, actor=actor, occurred_at=at, **kw)


class LogBuilder:
    """Places envelopes on partitions like a real log and hands out records."""

    def __init__(self, partitions: int = 4) -> None:
        self.partitions = partitions
        self.records: list[Record] = []
        self._next: dict[int, int] = {}

    def add(self, envelope: Envelope) -> Record:
        raw = DEFAULT_CODEC.encode(envelope)
        return self.add_raw(partition_for(envelope.partition_key, self.partitions), raw,
                            envelope)

    def add_raw(self, partition: int, raw: bytes, envelope: Envelope | None = None) -> Record:
        offset = self._next.get(partition, 0)
        self._next[partition] = offset + 1
        if envelope is None:
            try:
                decoded: Envelope | None = DEFAULT_CODEC.decode(raw)
                error = None
            except Exception as exc:
                decoded, error = None, exc
        else:
            decoded, error = envelope, None
        record = Record(Position(partition, offset), raw, T0, decoded, error)  # type: ignore[arg-type]
        self.records.append(record)
        return record

    def extend(self, envelopes: Iterable[Envelope]) -> list[Record]:
        return [self.add(e) for e in envelopes]
