"""The EventLog port: what every adapter (Kafka, embedded SQLite) provides."""

from __future__ import annotations

import abc
import uuid
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import NamedTuple, Self

from eventlog.codec import Codec
from eventlog.envelope import Envelope
from eventlog.errors import EventTooLarge, LogNotStarted, UndecodableEvent
from eventlog.partitioning import partition_for

DEFAULT_MAX_EVENT_BYTES = 900 * 1024
DEFAULT_BATCH = 1000

Positions = Mapping[int, int]
"""Partition -> offset. As a start: the next offset to read. As an end: exclusive."""


class Position(NamedTuple):
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Record:
    """One record as stored. Exactly one of `envelope` and `error` is set.

    Undecodable bytes are surfaced instead of raised so a projector can
    dead-letter them (with `raw` and `position`) and keep folding.
    """

    position: Position
    raw: bytes
    timestamp_ms: int
    envelope: Envelope | None
    error: UndecodableEvent | None

    def unwrap(self) -> Envelope:
        if self.envelope is None:
            assert self.error is not None
            raise self.error
        return self.envelope


@dataclass(frozen=True, slots=True)
class PreparedEvent:
    """An envelope checked, encoded and placed, ready for an adapter to write."""

    partition: int
    key: str
    raw: bytes
    event_id: uuid.UUID


class EventLog(abc.ABC):
    """An append-only, partitioned log of envelopes.

    Placement: an envelope goes to `partition_for(envelope.partition_key, partitions)`,
    so the events of one aggregate stay in append order on one partition.
    Offsets per partition start at 0 and grow by one per record.

    Lifecycle: nothing touches I/O before `start()`; use `async with`.
    Iterators returned by `read*`/`tail*` hold resources: close them with
    `contextlib.aclosing` when leaving early.
    """

    def __init__(self, *, max_event_bytes: int, codec: Codec) -> None:
        if max_event_bytes <= 0:
            raise ValueError("max_event_bytes must be positive")
        self.max_event_bytes = max_event_bytes
        self.codec = codec

    # --- lifecycle --------------------------------------------------------

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    @abc.abstractmethod
    def partitions(self) -> int:
        """The partition count; known once started."""

    # --- writing ----------------------------------------------------------

    def prepare(self, envelope: Envelope) -> PreparedEvent:
        """Validate, encode and place; raises InvalidEvent or EventTooLarge."""
        partitions = self.partitions
        envelope.validated()
        raw = self.codec.encode(envelope)
        if len(raw) > self.max_event_bytes:
            raise EventTooLarge(len(raw), self.max_event_bytes, envelope.type)
        key = envelope.partition_key
        return PreparedEvent(partition_for(key, partitions), key, raw, envelope.event_id)

    async def append(self, envelope: Envelope) -> Position:
        """Write one envelope and return where it landed once durable.

        Either returns a position or raises; see LogUnavailable.outcome_unknown.
        """
        return (await self.write_prepared([self.prepare(envelope)]))[0]

    async def append_many(self, envelopes: Sequence[Envelope]) -> list[Position]:
        """Write many envelopes at once, in order per partition.

        Every envelope is checked before any is written, so one bad envelope
        refuses the whole call with nothing written.
        """
        prepared = [self.prepare(e) for e in envelopes]
        if not prepared:
            return []
        return await self.write_prepared(prepared)

    @abc.abstractmethod
    async def write_prepared(self, events: Sequence[PreparedEvent]) -> list[Position]:
        """Adapter hook: write already prepared events, return positions in order."""

    # --- reading ----------------------------------------------------------

    @abc.abstractmethod
    async def end_positions(self) -> dict[int, int]:
        """Per partition, the offset the next record will get (0 when empty)."""

    @abc.abstractmethod
    def read_batches(
        self,
        start: Positions | None = None,
        *,
        until: Positions | None = None,
        max_batch: int = DEFAULT_BATCH,
    ) -> AsyncGenerator[list[Record], None]:
        """Finite read in batches; each batch is in offset order per partition.

        `start=None` reads every partition from offset 0; otherwise only the
        partitions named, from the given offsets. `until` defaults to the end
        positions when the read begins (exclusive).
        """

    @abc.abstractmethod
    def tail_batches(
        self, start: Positions | None = None, *, max_batch: int = DEFAULT_BATCH
    ) -> AsyncGenerator[list[Record], None]:
        """Endless read that waits for new appends.

        `start=None` begins at the current end of every partition (only new
        appends); otherwise the partitions named, from the given offsets.
        """

    async def read(
        self, start: Positions | None = None, *, until: Positions | None = None
    ) -> AsyncGenerator[Record, None]:
        batches = self.read_batches(start, until=until)
        try:
            async for batch in batches:
                for record in batch:
                    yield record
        finally:
            await batches.aclose()

    async def tail(self, start: Positions | None = None) -> AsyncGenerator[Record, None]:
        batches = self.tail_batches(start)
        try:
            async for batch in batches:
                for record in batch:
                    yield record
        finally:
            await batches.aclose()

    # --- helpers for adapters ---------------------------------------------

    def make_record(self, partition: int, offset: int, raw: bytes, timestamp_ms: int) -> Record:
        position = Position(partition, offset)
        try:
            return Record(position, raw, timestamp_ms, self.codec.decode(raw), None)
        except UndecodableEvent as exc:
            return Record(position, raw, timestamp_ms, None, exc)

    def resolve_start(self, start: Positions | None) -> dict[int, int]:
        """Check a start mapping; None means every partition from offset 0."""
        if start is None:
            return dict.fromkeys(range(self.partitions), 0)
        out: dict[int, int] = {}
        for partition, offset in start.items():
            if not 0 <= partition < self.partitions:
                raise ValueError(f"partition {partition} not in 0..{self.partitions - 1}")
            if offset < 0:
                raise ValueError(f"offset {offset} is negative")
            out[partition] = offset
        return out

    async def resolve_until(self, positions: Mapping[int, int],
                            until: Positions | None) -> dict[int, int]:
        """Exclusive end of a finite read per partition: `until`, else the log end now."""
        ends = dict(until) if until is not None else {}
        if any(p not in ends for p in positions):
            current = await self.end_positions()
            for p in positions:
                ends.setdefault(p, current[p])
        return ends

    @staticmethod
    def not_started(name: str) -> LogNotStarted:
        return LogNotStarted(f"{name} is not started; call start() or use `async with`")
