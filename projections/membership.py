"""Which partitions a projector replica owns.

Replicas share the log's partitions through a Kafka consumer group: the group
coordinator hands each live member a set of partitions and rebalances when
members come and go. The member never reads through its group consumer (its
partitions stay paused); it only learns its assignment, and the projector
reads those partitions itself from offset 0 (see projector.py). Ownership is
advisory: the compare-and-set on applied positions is what keeps two members
that briefly overlap during a rebalance from both writing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

log = logging.getLogger("wdl.projector.membership")


async def static_membership(partitions: int) -> AsyncIterator[frozenset[int]]:
    """One process owns every partition (the embedded log, or a single replica)."""
    yield frozenset(range(partitions))
    await asyncio.Event().wait()  # the assignment never changes


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: KafkaGroupMembership) -> None:
        self.owner = owner

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        self.owner._publish(frozenset())

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        self.owner.consumer_pause(assigned)
        self.owner._publish(frozenset(tp.partition for tp in assigned))


class KafkaGroupMembership:
    def __init__(self, bootstrap_servers: str, topic: str, group_id: str, *,
                 session_timeout_ms: int = 10_000, heartbeat_interval_ms: int = 1_000) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self.session_timeout_ms = session_timeout_ms
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self._consumer: Any = None
        self._queue: asyncio.Queue[frozenset[int]] = asyncio.Queue()

    def _publish(self, partitions: frozenset[int]) -> None:
        self._queue.put_nowait(partitions)

    def consumer_pause(self, assigned: list[TopicPartition]) -> None:
        if self._consumer is not None and assigned:
            self._consumer.pause(*assigned)

    async def __aiter__(self) -> AsyncIterator[frozenset[int]]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap_servers, group_id=self.group_id,
            enable_auto_commit=False, session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            rebalance_timeout_ms=self.session_timeout_ms,
        )
        self._consumer = consumer
        consumer.subscribe([self.topic], listener=_Listener(self))
        await consumer.start()
        poller = asyncio.create_task(self._poll(consumer))
        try:
            while True:
                yield await self._queue.get()
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await poller
            with contextlib.suppress(Exception):
                await consumer.stop()
            self._consumer = None

    @staticmethod
    async def _poll(consumer: Any) -> None:
        # Polling keeps the member inside max_poll_interval; partitions are paused,
        # so nothing is fetched.
        while True:
            await consumer.getmany(timeout_ms=500, max_records=1)
