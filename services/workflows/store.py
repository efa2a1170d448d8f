"""The workflow log: a port and two adapters (SQLite embedded, Kafka).

Every change of a workflow instance is one record on this log, apart from the
control log: instance events are data-plane traffic (one per step), the
control log carries configuration. A record is JSON `{instance, type, at, gen,
data}`; the log is append-only and read back in order per instance (Kafka: the
record key is the instance, so one instance's records share a partition).

The engine folds the whole log at start (`load`) and then is its only writer
while it holds the `workflows` lease; `gen` is the lease generation it held,
which lets a replay ignore records of a writer that was fenced off
(`services/workflows/model.py`, `fold_all`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from services.sqlite_log import SqliteLogFile

DEFAULT_TOPIC = "wdl.workflows"
DEFAULT_PARTITIONS = 8


class WorkflowRecord(msgspec.Struct, frozen=True, kw_only=True):
    instance: str  # "<namespace>/<workflow>/<id>"
    type: str
    at: int  # ms since the epoch, engine clock
    gen: int = 0  # the lease generation of the engine that wrote it
    data: dict[str, Any] = msgspec.field(default_factory=dict)


log = logging.getLogger("wdl.workflows")
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(WorkflowRecord)


def _encode(record: WorkflowRecord) -> bytes:
    # Values are depth-bounded before they become records (bounds.py); should one slip
    # through, it is refused here rather than crash whoever appends it.
    try:
        return _encoder.encode(record)
    except RecursionError:
        raise ValueError(f"a record of {record.instance} nests too deeply to store") from None


def _decode_all(bodies: Sequence[bytes]) -> list[WorkflowRecord]:
    """Every record that decodes; one that does not (written before values were bounded,
    or damaged) is skipped with a warning: the engine must start whatever the log holds."""
    out: list[WorkflowRecord] = []
    for body in bodies:
        try:
            out.append(_decoder.decode(body))
        except (RecursionError, msgspec.DecodeError, ValueError) as exc:
            log.warning("skipped an undecodable workflow record (%d bytes): %s", len(body),
                        str(exc)[:200])
    return out


class WorkflowStore(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def append(self, records: Sequence[WorkflowRecord]) -> None:
        """Durable when it returns (SQLite committed, Kafka acks=all)."""

    async def load(self) -> list[WorkflowRecord]:
        """Every record, in append order per instance."""


class SqliteWorkflowStore(SqliteLogFile):
    async def start(self) -> None:
        db = self._open()
        db.execute("CREATE TABLE IF NOT EXISTS workflow_log (seq INTEGER PRIMARY KEY "
                   "AUTOINCREMENT, instance TEXT NOT NULL, body BLOB NOT NULL)")
        self._db = db

    async def append(self, records: Sequence[WorkflowRecord]) -> None:
        db = self._conn()
        rows = [(r.instance, _encode(r)) for r in records]

        def write() -> None:
            with db:
                db.executemany("INSERT INTO workflow_log (instance, body) VALUES (?, ?)", rows)

        async with self._lock:
            await asyncio.to_thread(write)

    async def load(self) -> list[WorkflowRecord]:
        db = self._conn()
        async with self._lock:
            rows = await asyncio.to_thread(
                lambda: db.execute("SELECT body FROM workflow_log ORDER BY seq").fetchall())
        return _decode_all([body for (body,) in rows])


@dataclass(frozen=True)
class KafkaWorkflowSettings:
    bootstrap_servers: str
    topic: str = DEFAULT_TOPIC
    partitions: int = DEFAULT_PARTITIONS
    replication_factor: int = 1
    timeout_s: float = 30.0


class KafkaWorkflowStore:
    """Records on a Kafka topic of their own; idempotent producer, acks=all."""

    def __init__(self, settings: KafkaWorkflowSettings) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> None:
        s = self.settings
        admin = AIOKafkaAdminClient(bootstrap_servers=s.bootstrap_servers)
        await asyncio.wait_for(admin.start(), s.timeout_s)
        try:
            if s.topic not in await admin.list_topics():
                # Instance history is the only copy of a workflow's state: never expire it.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics([NewTopic(
                        s.topic, s.partitions, s.replication_factor,
                        topic_configs={"retention.ms": "-1", "cleanup.policy": "delete"})])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(bootstrap_servers=s.bootstrap_servers, acks="all",
                                    enable_idempotence=True, linger_ms=0,
                                    request_timeout_ms=int(s.timeout_s * 1000))
        await asyncio.wait_for(producer.start(), s.timeout_s)
        self._producer = producer

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def append(self, records: Sequence[WorkflowRecord]) -> None:
        if self._producer is None:
            raise RuntimeError("KafkaWorkflowStore is not started")
        futures = [await self._producer.send(self.settings.topic, _encode(r),
                                             key=r.instance.encode())
                   for r in records]
        await asyncio.wait_for(asyncio.gather(*futures), self.settings.timeout_s)

    async def load(self) -> list[WorkflowRecord]:
        s = self.settings
        consumer = AIOKafkaConsumer(bootstrap_servers=s.bootstrap_servers,
                                    enable_auto_commit=False, auto_offset_reset="earliest")
        await asyncio.wait_for(consumer.start(), s.timeout_s)
        try:
            if self._producer is None:
                raise RuntimeError("KafkaWorkflowStore is not started")
            # The producer fetches the topic's metadata; a consumer without a subscription
            # does not know its partitions.
            parts = await self._producer.partitions_for(s.topic)
            tps = [TopicPartition(s.topic, p) for p in sorted(parts)]
            if not tps:
                return []
            consumer.assign(tps)
            ends = await consumer.end_offsets(tps)
            starts = await consumer.beginning_offsets(tps)
            # Explicit offsets: a lazy seek_to_beginning can lose to the default reset.
            for tp in tps:
                consumer.seek(tp, starts[tp])
            bodies: list[bytes] = []
            remaining = {tp for tp in tps if ends[tp] > starts[tp]}
            deadline = asyncio.get_running_loop().time() + s.timeout_s * 4
            while remaining:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(f"reading {s.topic} did not reach its end offsets")
                batch = await consumer.getmany(*remaining, timeout_ms=500, max_records=5000)
                for tp, messages in batch.items():
                    for m in messages:
                        if m.offset < ends[tp] and m.value is not None:
                            bodies.append(m.value)
                    if await consumer.position(tp) >= ends[tp]:
                        remaining.discard(tp)
            return _decode_all(bodies)
        finally:
            await consumer.stop()


def open_workflow_store(url: str) -> WorkflowStore:
    """`sqlite:///path` or `kafka://host:port[,host:port]?topic=T&partitions=N`."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "sqlite":
        return SqliteWorkflowStore(Path(parts.path))
    if parts.scheme == "kafka":
        return KafkaWorkflowStore(KafkaWorkflowSettings(
            parts.netloc, topic=query.get("topic", DEFAULT_TOPIC),
            partitions=int(query.get("partitions", DEFAULT_PARTITIONS))))
    raise ValueError(f"unsupported workflow log URL {url!r} (sqlite:/// or kafka://)")
