"""One queue service replica: the producer endpoint and a consumer in the shared group.

Replicas share the message log's partitions through the Kafka consumer group
(services/queues/store.py); a replica killed with SIGKILL loses nothing: its
partitions go to the others, which read them again from the last commit.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass, field
from typing import Any

from projections.reader import ProjectionReader
from services.fairshare import NamespaceShares
from services.queues.app import create_app
from services.queues.bounds import QueueBounds
from services.queues.consumer import Consumer, Invoker
from services.queues.metrics import QueueMetrics
from services.queues.store import QueueLog
from services.serving import HttpServer


@dataclass
class QueuesService:
    log: QueueLog
    reader: ProjectionReader
    invoker: Invoker
    internal_token: str
    host: str = "127.0.0.1"
    port: int = 8797
    sock: socket.socket | None = None  # pre-bound (the gateway is told the address first)
    metrics: QueueMetrics = field(default_factory=QueueMetrics)
    bounds: QueueBounds = field(default_factory=QueueBounds)
    consumer: Consumer | None = None
    http: HttpServer | None = None

    @property
    def url(self) -> str:
        assert self.http is not None
        return self.http.url

    @property
    def address(self) -> str:
        host, port = self.http.address if self.http is not None else ("", 0)
        return f"{host}:{port}"

    async def _queue(self, namespace: str, queue: str) -> dict[str, Any] | None:
        return await self.reader.resource("queue", namespace, queue)

    def health(self) -> dict[str, Any]:
        alive = self.consumer is not None and self.consumer.alive()
        c = self.consumer
        return {"ok": alive, "open": sum(len(v) for v in c.tracker.open.values()) if c else 0,
                "parked": c.parked if c else 0, "parked_bytes": c.parked_bytes if c else 0}

    async def start(self) -> None:
        # Each namespace's share: its `limits` (`wdl ns limits set --queue-batches`),
        # else the platform's `per_namespace`.
        shares = NamespaceShares(self.reader.namespace,
                                 {"queue_batches": self.bounds.per_namespace})
        self.consumer = Consumer(self.log, self.invoker, self._queue, self.metrics,
                                 bounds=self.bounds, share_of=shares.of("queue_batches"),
                                 refresh_share=shares.refresh)
        await self.log.start()
        self.http = HttpServer(create_app(lambda: self.log, self._queue, self.internal_token,
                                          self.metrics, self.health, lambda: self.consumer),
                               host=self.host, port=self.port, sock=self.sock, name="queues")
        await self.http.start()
        await self.consumer.start()

    async def stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()
        if self.http is not None:
            await self.http.stop()
        await self.log.stop()

    async def wait(self) -> None:
        while self.consumer is not None and self.consumer.alive():
            await asyncio.sleep(0.5)
