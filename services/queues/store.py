"""The message log: a port and two adapters (SQLite embedded, Kafka).

Messages are data-plane records on a log of their own, apart from the control
log (Kafka: topic `<control topic>.queues` keyed by message id, so one queue's
messages spread over the partitions and the consumer replicas; idempotent producer,
acks=all). `append` returns only once the log has them durably. Consumers read
with `poll` and `commit` per partition the offset below which every message is
finished (acked, re-appended as a retry, dead-lettered or dropped with a
counted reason); a consumer that dies re-reads from the last commit, so a
message is delivered at least once and never skipped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata

from services.queues.bounds import DAY_S, MAX_RETENTION_S
from services.queues.model import QueueMessage, decode, encode
from services.sqlite_log import SqliteLogFile

DEFAULT_TOPIC = "wdl.queues"
DEFAULT_PARTITIONS = 16
DEFAULT_GROUP = "wdl-queues"


@dataclass(frozen=True, slots=True)
class Delivery:
    partition: int
    offset: int
    epoch: int  # the partition's assignment epoch when read (a stale one is not committed)
    message: QueueMessage


class QueueLog(Protocol):
    on_assign: Callable[[dict[int, int]], None] | None
    """Called with {partition: epoch} of partitions (re)assigned to this consumer; its
    earlier, uncommitted deliveries of them will be read again."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def append(self, messages: Sequence[QueueMessage]) -> None:
        """Durable when it returns (SQLite committed, Kafka acks=all)."""

    async def poll(self, max_records: int, timeout_ms: int) -> list[Delivery]: ...

    async def commit(self, offsets: dict[int, int]) -> None:
        """Per partition: the next offset to read after a restart."""


class SqliteQueueLog(SqliteLogFile):
    """One file, one partition (0); the single embedded consumer's cursor beside it."""

    def __init__(self, path: Path, group: str = DEFAULT_GROUP, *, consume: bool = True) -> None:
        super().__init__(path)
        self.group = group
        self.consume = consume
        self.on_assign: Callable[[dict[int, int]], None] | None = None
        self._next = 0
        self._wake = asyncio.Event()

    async def start(self) -> None:
        db = self._open("busy_timeout=5000")
        db.execute("CREATE TABLE IF NOT EXISTS queue_log (seq INTEGER PRIMARY KEY "
                   "AUTOINCREMENT, key TEXT NOT NULL, body BLOB NOT NULL)")
        db.execute("CREATE TABLE IF NOT EXISTS queue_cursor (grp TEXT PRIMARY KEY, "
                   "next INTEGER NOT NULL)")
        self._db = db
        row = db.execute("SELECT next FROM queue_cursor WHERE grp = ?", (self.group,)).fetchone()
        self._next = row[0] if row else 0
        if self.consume and self.on_assign is not None:
            self.on_assign({0: 1})

    async def append(self, messages: Sequence[QueueMessage]) -> None:
        rows = [(m.key, encode(m)) for m in messages]
        db = self._conn()

        def write() -> None:
            db.execute("BEGIN IMMEDIATE")
            db.executemany("INSERT INTO queue_log (key, body) VALUES (?, ?)", rows)
            db.execute("COMMIT")

        async with self._lock:
            await asyncio.to_thread(write)
        self._wake.set()

    async def poll(self, max_records: int, timeout_ms: int) -> list[Delivery]:
        db = self._conn()
        for _ in range(2):
            async with self._lock:
                rows = await asyncio.to_thread(lambda: db.execute(
                    "SELECT seq, body FROM queue_log WHERE seq >= ? ORDER BY seq LIMIT ?",
                    (self._next, max_records)).fetchall())
            if rows:
                self._next = rows[-1][0] + 1
                return [Delivery(0, seq, 1, decode(body)) for seq, body in rows]
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout_ms / 1000)
            except TimeoutError:
                return []
        return []

    async def commit(self, offsets: dict[int, int]) -> None:
        if 0 not in offsets:
            return
        db = self._conn()

        def write() -> None:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT INTO queue_cursor (grp, next) VALUES (?, ?) ON CONFLICT(grp) "
                       "DO UPDATE SET next = excluded.next", (self.group, offsets[0]))
            # Below every cursor nothing is read again: trimmed, so the file holds only
            # unfinished messages (its freed pages are reused; it does not grow for good).
            db.execute("DELETE FROM queue_log WHERE seq < (SELECT MIN(next) FROM queue_cursor)")
            db.execute("COMMIT")

        async with self._lock:
            await asyncio.to_thread(write)


@dataclass(frozen=True)
class KafkaQueueSettings:
    bootstrap_servers: str
    topic: str = DEFAULT_TOPIC
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = 1
    group: str = DEFAULT_GROUP
    consume: bool = True
    # The topic's retention when this creates it: longer than the longest message
    # retention (14 days) so the log never drops what the consumer still holds.
    retention_ms: int = (MAX_RETENTION_S + DAY_S) * 1000


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, log: KafkaQueueLog) -> None:
        self.log = log

    async def on_partitions_revoked(self, revoked: Any) -> None:
        for tp in revoked:
            self.log.epochs[tp.partition] = self.log.epochs.get(tp.partition, 0) + 1

    async def on_partitions_assigned(self, assigned: Any) -> None:
        fresh = {}
        for tp in assigned:
            epoch = self.log.epochs.get(tp.partition, 0) + 1
            self.log.epochs[tp.partition] = epoch
            fresh[tp.partition] = epoch
        if self.log.on_assign is not None:
            self.log.on_assign(fresh)


class KafkaQueueLog:
    """Messages on one topic shared by all queues; consumer replicas share it through the
    consumer group `group` (each partition is read by one replica at a time)."""

    def __init__(self, settings: KafkaQueueSettings) -> None:
        self.settings = settings
        self.on_assign: Callable[[dict[int, int]], None] | None = None
        self.epochs: dict[int, int] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> None:
        s = self.settings
        admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers)
        await admin.start()
        try:
            await admin.create_topics([NewTopic(s.topic, s.partitions, s.replication_factor,
                                                topic_configs={
                                                    "retention.ms": str(s.retention_ms)})])
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all",
                                    enable_idempotence=True, linger_ms=2,
                                    max_request_size=4 * 1024 * 1024)
        await producer.start()
        self._producer = producer
        if s.consume:
            consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers, group_id=s.group,
                                        enable_auto_commit=False, auto_offset_reset="earliest",
                                        isolation_level="read_committed",
                                        max_poll_interval_ms=300_000)
            consumer.subscribe([s.topic], listener=_Rebalance(self))
            await consumer.start()
            self._consumer = consumer

    async def stop(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def append(self, messages: Sequence[QueueMessage]) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaQueueLog is not started")
        # Keyed by message id: a queue's messages spread over all partitions, so consumer
        # replicas share even one busy queue (Queues promise no order).
        futures = [await self._producer.send(self.settings.topic, encode(m),
                                             key=m.id.encode("utf-8")) for m in messages]
        await asyncio.gather(*futures)

    async def poll(self, max_records: int, timeout_ms: int) -> list[Delivery]:
        if self._consumer is None:
            raise RuntimeError("KafkaQueueLog is not consuming")
        batches = await self._consumer.getmany(timeout_ms=timeout_ms, max_records=max_records)
        out: list[Delivery] = []
        for tp, records in batches.items():
            epoch = self.epochs.get(tp.partition, 0)
            out.extend(Delivery(tp.partition, r.offset, epoch, decode(r.value))
                       for r in records if r.value is not None)
        return out

    async def commit(self, offsets: dict[int, int]) -> None:
        if self._consumer is None or not offsets:
            return
        assigned = {tp.partition for tp in self._consumer.assignment()}
        todo = {TopicPartition(self.settings.topic, p): OffsetAndMetadata(o, "")
                for p, o in offsets.items() if p in assigned}
        if todo:
            await self._consumer.commit(todo)


def open_queue_log(url: str, *, consume: bool = True) -> QueueLog:
    """`sqlite:///path` or `kafka://host:port[,host:port]?topic=…&partitions=…&group=…`."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    if parts.scheme == "sqlite":
        return SqliteQueueLog(Path(parts.path), query.get("group", [DEFAULT_GROUP])[0],
                              consume=consume)
    if parts.scheme == "kafka":
        return KafkaQueueLog(KafkaQueueSettings(
            bootstrap_servers=parts.netloc,
            topic=query.get("topic", [DEFAULT_TOPIC])[0],
            partitions=int(query.get("partitions", [DEFAULT_PARTITIONS])[0]),
            replication_factor=int(query.get("replication", ["1"])[0]),
            group=query.get("group", [DEFAULT_GROUP])[0], consume=consume))
    raise ValueError(f"unsupported queue log URL {url!r} (sqlite:///… or kafka://…)")
