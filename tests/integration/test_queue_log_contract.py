"""One contract for every message log adapter (services/queues/store.py): an abstract suite,
subclassed per backend. Kafka runs against the real broker of the test services on a topic
of its own; SQLite on a temp file. Each test opens logs by URL, as the service does.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.endpoints import Endpoints
from services.queues.model import QueueMessage
from services.queues.store import Delivery, QueueLog, open_queue_log

pytestmark = pytest.mark.integration


def message(n: int, queue: str = "jobs") -> QueueMessage:
    return QueueMessage(id=f"m{n}", namespace="acme", queue=queue, body=f"{n}".encode(),
                        content_type="text", timestamp=1_700_000_000_000 + n, attempts=1 + n % 3,
                        not_before=n)


async def read(log: QueueLog, count: int, timeout: float = 30) -> list[Delivery]:
    out: list[Delivery] = []
    deadline = time.monotonic() + timeout
    while len(out) < count and time.monotonic() < deadline:
        out.extend(await log.poll(100, 200))
    return out


class QueueLogContract:
    url: str

    def open(self, *, consume: bool = True) -> QueueLog:
        return open_queue_log(self.url, consume=consume)

    async def test_appended_messages_read_back_whole_and_in_order(self) -> None:
        log = self.open()
        await log.start()
        try:
            await log.append([message(i) for i in range(20)])
            got = await read(log, 20)
        finally:
            await log.stop()
        assert [d.message for d in got] == [message(i) for i in range(20)]
        assert len({(d.partition, d.offset) for d in got}) == 20

    async def test_a_restart_reads_again_from_the_last_commit(self) -> None:
        producer = self.open(consume=False)
        await producer.start()
        await producer.append([message(i) for i in range(10)])
        await producer.stop()
        first = self.open()
        await first.start()
        try:
            got = await read(first, 10)
            assert len(got) == 10
            # Finished: the first four; the others were read but not finished.
            last = got[3]
            await first.commit({last.partition: last.offset + 1})
        finally:
            await first.stop()
        second = self.open()
        await second.start()
        try:
            again = await read(second, 6)
            assert [d.message.id for d in again] == [f"m{i}" for i in range(4, 10)]
            assert await second.poll(100, 300) == []
        finally:
            await second.stop()

    async def test_nothing_committed_means_everything_again(self) -> None:
        log = self.open()
        await log.start()
        try:
            await log.append([message(1), message(2, queue="other")])
            assert len(await read(log, 2)) == 2
        finally:
            await log.stop()
        log = self.open()
        await log.start()
        try:
            assert sorted(d.message.id for d in await read(log, 2)) == ["m1", "m2"]
        finally:
            await log.stop()


class TestSqliteQueueLog(QueueLogContract):
    @pytest.fixture(autouse=True)
    def _url(self, tmp_path: Path) -> None:
        self.url = f"sqlite://{tmp_path / 'queues.sqlite'}"


class TestKafkaQueueLog(QueueLogContract):
    @pytest.fixture(autouse=True)
    def _url(self, services: Endpoints, unique_name: Callable[[str], str]) -> None:
        assert services.kafka_bootstrap_servers
        # One partition: "in order" and "from the last commit" are per partition.
        topic = unique_name("ql") + uuid.uuid4().hex[:6]
        self.url = (f"kafka://{services.kafka_bootstrap_servers}?topic={topic}"
                    f"&group={topic}&partitions=1")
