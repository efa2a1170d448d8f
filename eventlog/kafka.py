"""KafkaEventLog: the production adapter on aiokafka.

Appends go through one idempotent producer (acks=all), with the partition
computed by `partition_for` and passed explicitly. Reads use consumers with
manual assignment and no group: the log does not track who read what; the
projector stores its own offsets next to its effects.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import (
    KafkaError,
    OutOfOrderSequenceNumber,
    ProducerFenced,
    UnknownProducerId,
)

from eventlog.codec import DEFAULT_CODEC, Codec
from eventlog.errors import LogUnavailable, PartitionCountMismatch
from eventlog.port import (
    DEFAULT_BATCH,
    DEFAULT_MAX_EVENT_BYTES,
    EventLog,
    Position,
    Positions,
    PreparedEvent,
    Record,
)

DEFAULT_PARTITIONS = 16
_UNKNOWN_TOPIC = 3
_TOPIC_ALREADY_EXISTS = 36
# Room for the record framing, key and headers around the largest event.
_RECORD_OVERHEAD = 64 * 1024


@dataclass(frozen=True, slots=True)
class KafkaSettings:
    bootstrap_servers: str
    topic: str = "wdl.events"
    partitions: int | None = None
    """None: use the topic's count, or DEFAULT_PARTITIONS when creating it."""
    replication_factor: int = 1
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    connect_timeout_s: float = 15.0
    """Bound on start() and on metadata calls such as end_positions()."""
    append_timeout_s: float = 30.0
    """An append not acknowledged by then raises LogUnavailable(outcome_unknown=True)."""
    request_timeout_ms: int = 10_000
    linger_ms: int = 0
    client_id: str = "wdl-eventlog"
    fetch_max_wait_ms: int = 200


class KafkaEventLog(EventLog):
    def __init__(self, settings: KafkaSettings, *, codec: Codec = DEFAULT_CODEC) -> None:
        super().__init__(max_event_bytes=settings.max_event_bytes, codec=codec)
        if settings.partitions is not None and settings.partitions <= 0:
            raise ValueError("partitions must be positive")
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._replace_lock = asyncio.Lock()
        self._retiring: set[asyncio.Task[None]] = set()
        self.producer_replacements = 0
        """How often a broken producer was replaced (observability and tests)."""
        self._meta: AIOKafkaConsumer | None = None
        self._partitions: int | None = None
        self._tps: list[TopicPartition] = []

    @property
    def topic(self) -> str:
        return self.settings.topic

    @property
    def partitions(self) -> int:
        if self._partitions is None:
            raise self.not_started("KafkaEventLog")
        return self._partitions

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if self._producer is not None:
            return
        s = self.settings
        producer = self._new_producer()
        meta = self._consumer()
        try:
            async with asyncio.timeout(s.connect_timeout_s):
                partitions = await self._ensure_topic()
                await producer.start()
                await meta.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._close_quietly(producer, meta)
            raise LogUnavailable(
                f"Kafka at {s.bootstrap_servers} unavailable while starting: {exc!r}"
            ) from exc
        except BaseException:
            await self._close_quietly(producer, meta)
            raise
        self._producer, self._meta = producer, meta
        self._partitions = partitions
        self._tps = [TopicPartition(s.topic, p) for p in range(partitions)]

    async def stop(self) -> None:
        producer, meta = self._producer, self._meta
        self._producer = self._meta = None
        self._partitions = None
        await self._close_quietly(producer, meta)
        retiring, self._retiring = self._retiring, set()
        if retiring:
            await asyncio.gather(*retiring, return_exceptions=True)

    async def _close_quietly(self, *clients: AIOKafkaProducer | AIOKafkaConsumer | None) -> None:
        for client in clients:
            if client is None:
                continue
            # Bounded: an idempotent producer flushes forever while the broker is down.
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await client.stop()

    def _new_producer(self) -> AIOKafkaProducer:
        s = self.settings
        return AIOKafkaProducer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            acks="all",
            enable_idempotence=True,
            linger_ms=s.linger_ms,
            request_timeout_ms=s.request_timeout_ms,
            max_request_size=s.max_event_bytes + _RECORD_OVERHEAD,
        )

    async def _replace_producer(self, broken: AIOKafkaProducer) -> None:
        """Swap in a new producer (new producer id, sequences from 0).

        aiokafka never resets an idempotent producer's sequence state: after
        OutOfOrderSequenceNumber (seen when the broker restarts with batches in
        flight) every later batch of that partition is refused again. A fresh
        producer id is the way out; callers retry with the same event id.
        """
        async with self._replace_lock:
            if self._producer is not broken:
                return  # another append already replaced it
            fresh = self._new_producer()
            try:
                async with asyncio.timeout(self.settings.connect_timeout_s):
                    await fresh.start()
            except (KafkaError, OSError, TimeoutError) as exc:
                await self._close_quietly(fresh)
                raise LogUnavailable(
                    f"Kafka producer needs replacing and the broker is unavailable: {exc!r}",
                    outcome_unknown=True,
                ) from exc
            self._producer = fresh
            self.producer_replacements += 1
            task = asyncio.create_task(self._close_quietly(broken))
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)

    def _consumer(self) -> AIOKafkaConsumer:
        s = self.settings
        return AIOKafkaConsumer(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=s.request_timeout_ms,
            fetch_max_wait_ms=s.fetch_max_wait_ms,
            max_partition_fetch_bytes=max(1024 * 1024, s.max_event_bytes + _RECORD_OVERHEAD),
        )

    async def _ensure_topic(self) -> int:
        """Create the topic with infinite retention if missing; return its partition count."""
        s = self.settings
        admin = AIOKafkaAdminClient(
            bootstrap_servers=s.bootstrap_servers,
            client_id=s.client_id,
            request_timeout_ms=s.request_timeout_ms,
        )
        await admin.start()
        try:
            existing = await self._partition_count(admin)
            if existing is None:
                wanted = s.partitions or DEFAULT_PARTITIONS
                topic = NewTopic(
                    s.topic,
                    num_partitions=wanted,
                    replication_factor=s.replication_factor,
                    topic_configs={
                        "retention.ms": "-1",
                        "retention.bytes": "-1",
                        "cleanup.policy": "delete",
                        "max.message.bytes": str(s.max_event_bytes + _RECORD_OVERHEAD),
                    },
                )
                response = await admin.create_topics([topic])
                for entry in response.topic_errors:
                    code = entry[1]
                    if code not in (0, _TOPIC_ALREADY_EXISTS):
                        raise LogUnavailable(f"creating topic {s.topic} failed: {entry!r}")
                # Metadata lags creation by a moment; wait for the partitions to show.
                existing = await self._partition_count(admin)
                while existing is None:  # bounded by the connect timeout around start()
                    await asyncio.sleep(0.05)
                    existing = await self._partition_count(admin)
            if s.partitions is not None and existing != s.partitions:
                raise PartitionCountMismatch(existing, s.partitions)
            return existing
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await admin.close()

    async def _partition_count(self, admin: AIOKafkaAdminClient) -> int | None:
        topics: list[dict[str, Any]] = await admin.describe_topics([self.settings.topic])
        for entry in topics:
            if entry["topic"] != self.settings.topic:
                continue
            if entry["error_code"] == _UNKNOWN_TOPIC or not entry["partitions"]:
                return None
            if entry["error_code"] != 0:
                raise LogUnavailable(f"describing topic {self.topic}: error {entry['error_code']}")
            return len(entry["partitions"])
        return None

    # --- writing ----------------------------------------------------------

    async def write_prepared(self, events: Sequence[PreparedEvent]) -> list[Position]:
        producer = self._producer
        if producer is None:
            raise self.not_started("KafkaEventLog")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.append_timeout_s
        # (future, indexes of `events` in that produce batch, in offset order)
        sent: list[tuple[asyncio.Future[Any], list[int]]] = []
        try:
            async with asyncio.timeout_at(deadline):
                if len(events) == 1:
                    event = events[0]
                    future = await producer.send(
                        self.topic, event.raw, event.key.encode(), partition=event.partition
                    )
                    sent.append((future, [0]))
                else:
                    await self._send_batches(producer, events, sent)
        except (KafkaError, TimeoutError) as exc:
            _abandon(sent)
            handed = sum(len(members) for _, members in sent)
            raise LogUnavailable(
                f"could not hand {len(events) - handed} of {len(events)} events to the "
                f"Kafka client: {exc!r}",
                outcome_unknown=bool(sent),
            ) from exc
        except BaseException:
            _abandon(sent)
            raise
        try:
            for future, _ in sent:
                if not future.done():
                    await asyncio.wait((future,), timeout=max(0.0, deadline - loop.time()))
                    if not future.done():
                        break
        except BaseException:
            _abandon(sent)
            raise
        pending = [(f, m) for f, m in sent if not f.done()]
        if pending:
            _abandon(pending)
            if _sender_died(producer):
                await self._replace_producer(producer)
            raise LogUnavailable(
                f"{sum(len(m) for _, m in pending)} of {len(events)} appends not acknowledged "
                f"within {self.settings.append_timeout_s}s; they may still be written",
                outcome_unknown=True,
            )
        errors = [f.exception() for f, _ in sent]  # retrieves every outcome once
        positions: list[Position | None] = [None] * len(events)
        for (future, members), error in zip(sent, errors, strict=True):
            if error is not None:
                if isinstance(error, _PRODUCER_STATE_ERRORS) or _sender_died(producer):
                    await self._replace_producer(producer)
                raise LogUnavailable(
                    f"Kafka refused an append to partition {events[members[0]].partition}: "
                    f"{error!r}",
                    outcome_unknown=True,
                ) from error
            base = future.result().offset
            if base is None or base < 0:
                # DuplicateSequenceNumber: the broker has the records, not their offsets.
                raise LogUnavailable(
                    "Kafka acknowledged a retried append without its offset",
                    outcome_unknown=True,
                )
            partition = events[members[0]].partition
            for i, index in enumerate(members):
                positions[index] = Position(partition, base + i)
        return [p for p in positions if p is not None]

    async def _send_batches(
        self,
        producer: AIOKafkaProducer,
        events: Sequence[PreparedEvent],
        sent: list[tuple[asyncio.Future[Any], list[int]]],
    ) -> None:
        """Hand events over as one produce batch per partition (split when full).

        Building the batches here skips the per-message future and bookkeeping
        of send(), which is most of the client's cost per event. Offsets inside
        a batch are contiguous, so each event's offset is the batch base + index.
        """
        by_partition: dict[int, list[int]] = {}
        for index, event in enumerate(events):
            by_partition.setdefault(event.partition, []).append(index)
        for partition, indexes in by_partition.items():
            batch = producer.create_batch()
            members: list[int] = []
            for index in indexes:
                event = events[index]
                key = event.key.encode()
                if batch.append(key=key, value=event.raw, timestamp=None) is None:
                    sent.append((await self._submit(producer, batch, partition), members))
                    batch, members = producer.create_batch(), []
                    # The first record of a batch is always accepted, whatever its size.
                    batch.append(key=key, value=event.raw, timestamp=None)
                members.append(index)
            sent.append((await self._submit(producer, batch, partition), members))

    async def _submit(
        self, producer: AIOKafkaProducer, batch: Any, partition: int
    ) -> asyncio.Future[Any]:
        batch.close()  # or send() of other callers could append to it
        future: asyncio.Future[Any] = await producer.send_batch(
            batch, self.topic, partition=partition
        )
        return future

    # --- reading ----------------------------------------------------------

    async def end_positions(self) -> dict[int, int]:
        meta = self._meta
        if meta is None:
            raise self.not_started("KafkaEventLog")
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                ends = await meta.end_offsets(self._tps)
        except (KafkaError, TimeoutError) as exc:
            raise LogUnavailable(f"reading end offsets of {self.topic}: {exc!r}") from exc
        return {tp.partition: int(offset) for tp, offset in ends.items()}

    async def read_batches(
        self,
        start: Positions | None = None,
        *,
        until: Positions | None = None,
        max_batch: int = DEFAULT_BATCH,
    ) -> AsyncGenerator[list[Record], None]:
        positions = self.resolve_start(start)
        ends = await self.resolve_until(positions, until)
        active = {p: off for p, off in positions.items() if off < ends[p]}
        if not active:
            return
        async with self._reading(active) as consumer:
            while active:
                batch = await self._poll(consumer, max_batch, ends)
                if batch:
                    yield batch
                for p in list(active):
                    tp = TopicPartition(self.topic, p)
                    if await consumer.position(tp) >= ends[p]:
                        del active[p]
                        consumer.pause(tp)

    async def tail_batches(
        self, start: Positions | None = None, *, max_batch: int = DEFAULT_BATCH
    ) -> AsyncGenerator[list[Record], None]:
        positions = dict(await self.end_positions()) if start is None else self.resolve_start(start)
        if not positions:
            return
        async with self._reading(positions) as consumer:
            while True:
                batch = await self._poll(consumer, max_batch, None)
                if batch:
                    yield batch

    @contextlib.asynccontextmanager
    async def _reading(self, positions: dict[int, int]) -> AsyncGenerator[AIOKafkaConsumer, None]:
        consumer = self._consumer()
        try:
            async with asyncio.timeout(self.settings.connect_timeout_s):
                await consumer.start()
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._close_quietly(consumer)
            raise LogUnavailable(f"cannot read {self.topic}: {exc!r}") from exc
        try:
            tps = {p: TopicPartition(self.topic, p) for p in positions}
            consumer.assign(list(tps.values()))
            for p, offset in positions.items():
                consumer.seek(tps[p], offset)
            yield consumer
        finally:
            await self._close_quietly(consumer)

    async def _poll(
        self, consumer: AIOKafkaConsumer, max_batch: int, ends: dict[int, int] | None
    ) -> list[Record]:
        try:
            fetched = await consumer.getmany(
                timeout_ms=self.settings.fetch_max_wait_ms, max_records=max_batch
            )
        except KafkaError as exc:
            raise LogUnavailable(f"reading {self.topic}: {exc!r}") from exc
        records: list[Record] = []
        make = self.make_record
        for tp, messages in fetched.items():
            end = ends.get(tp.partition) if ends is not None else None
            for m in messages:
                if end is not None and m.offset >= end:
                    break
                records.append(make(tp.partition, m.offset, m.value, m.timestamp))
        return records


_PRODUCER_STATE_ERRORS = (OutOfOrderSequenceNumber, UnknownProducerId, ProducerFenced)


def _sender_died(producer: AIOKafkaProducer) -> bool:
    # aiokafka's sender task exits on fatal producer errors and then nothing is
    # ever delivered; there is no public flag for it.
    task = getattr(getattr(producer, "_sender", None), "sender_task", None)
    return task is not None and task.done()


def _abandon(sent: list[tuple[asyncio.Future[Any], list[int]]]) -> None:
    for future, _ in sent:
        future.add_done_callback(_consume_outcome)


def _consume_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of sends whose caller gave up, so none is logged as lost."""
    if not future.cancelled():
        future.exception()
