"""Fault test: the Kafka broker restarts in the middle of 10,000 appends.

Every append the log ACKNOWLEDGED must be in the log afterwards, exactly at
the position it was acknowledged with. Appends that raise LogUnavailable are
retried with the same envelope (same event id), as the control API does; only
those retries may leave more copies of an id in the log (at most one per
attempt that timed out), which readers drop by event id. The idempotent
producer itself must add no duplicates.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

import pytest

from eventlog import Envelope, KafkaEventLog, KafkaSettings, LogUnavailable, Position
from harness.endpoints import Endpoints
from tests.eventlog_samples import upload

pytestmark = pytest.mark.integration

EVENTS = 10_000
APPENDERS = 16
RESTART_AFTER_ACKS = 1_000
# Pacing, not a timing assertion: it keeps appends flowing for the whole restart.
PAUSE_BETWEEN_APPENDS_S = 0.02


class Broker(Protocol):
    def restart(self) -> None: ...


@dataclass
class Outcome:
    acknowledged: dict[uuid.UUID, Position] = field(default_factory=dict)
    retried: Counter[uuid.UUID] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    acks_before_restart: int = 0
    acks_after_restart: int = 0
    log_copies: Counter[uuid.UUID] = field(default_factory=Counter)
    records_read: int = 0
    position_of: dict[Position, uuid.UUID] = field(default_factory=dict)
    restart_s: float = 0.0
    producer_replacements: int = 0

    def summary(self) -> dict[str, object]:
        duplicated = [i for i, n in self.log_copies.items() if n > 1]
        return {
            "acknowledged": len(self.acknowledged),
            "records_read": self.records_read,
            "appends_retried": len(self.retried),
            "failures": dict(self.failures),
            "ids_with_two_copies_in_log": len(duplicated),
            "acks_before_restart": self.acks_before_restart,
            "acks_after_restart": self.acks_after_restart,
            "restart_s": round(self.restart_s, 1),
            "producer_replacements": self.producer_replacements,
        }


def _envelope(n: int) -> Envelope:
    event = upload(namespace=f"ns{n % 50}", worker=f"w{n % 7}", version=f"v{n}")
    return Envelope.new(event, actor="fault-test", idempotency_key=f"fault-{n}")


async def run_restart_scenario(bootstrap: str, broker: Broker, events: int = EVENTS) -> Outcome:
    topic = f"eventlog-restart-{uuid.uuid4().hex[:12]}"
    settings = KafkaSettings(
        bootstrap, topic=topic, partitions=8, append_timeout_s=5.0, request_timeout_ms=5_000
    )
    outcome = Outcome()
    pending = [_envelope(n) for n in range(events)]
    pending.reverse()
    restart_started = asyncio.Event()
    restart_done = asyncio.Event()

    async with KafkaEventLog(settings) as log:

        async def appender() -> None:
            while pending:
                env = pending.pop()
                while True:
                    try:
                        position = await log.append(env)
                    except LogUnavailable as exc:
                        outcome.failures[type(exc.__cause__ or exc).__name__] += 1
                        outcome.retried[env.event_id] += 1
                        await asyncio.sleep(0.2)
                        continue
                    break
                assert env.event_id not in outcome.acknowledged
                outcome.acknowledged[env.event_id] = position
                if restart_done.is_set():
                    outcome.acks_after_restart += 1
                elif not restart_started.is_set():
                    outcome.acks_before_restart += 1
                    if outcome.acks_before_restart >= RESTART_AFTER_ACKS:
                        restart_started.set()
                await asyncio.sleep(PAUSE_BETWEEN_APPENDS_S)

        async def restarter() -> None:
            await restart_started.wait()
            began = time.monotonic()
            await asyncio.to_thread(broker.restart)
            outcome.restart_s = time.monotonic() - began
            restart_done.set()

        restart = asyncio.create_task(restarter())
        await asyncio.gather(*(appender() for _ in range(APPENDERS)))
        await restart
        outcome.producer_replacements = log.producer_replacements

        async for batch in log.read_batches(max_batch=5000):
            for record in batch:
                env = record.unwrap()
                outcome.records_read += 1
                outcome.log_copies[env.event_id] += 1
                outcome.position_of[record.position] = env.event_id
    return outcome


async def test_every_acknowledged_append_survives_a_broker_restart(
    services: Endpoints, kafka_broker: Broker
) -> None:
    assert services.kafka_bootstrap_servers is not None
    outcome = await run_restart_scenario(services.kafka_bootstrap_servers, kafka_broker)
    print("broker restart outcome:", outcome.summary())

    assert len(outcome.acknowledged) == EVENTS
    # The restart really happened in the middle of the appends.
    assert outcome.acks_before_restart >= RESTART_AFTER_ACKS
    assert outcome.acks_after_restart > 0
    # Every acknowledged event is in the log, at the position it was acknowledged with.
    for event_id, position in outcome.acknowledged.items():
        assert outcome.position_of.get(position) == event_id
    assert set(outcome.acknowledged) <= set(outcome.log_copies)
    assert len(set(outcome.acknowledged.values())) == EVENTS
    # Only our own retries may leave a second copy; the producer adds none.
    # A timed-out attempt may still land, so an id has at most one copy per attempt.
    duplicated = {i for i, n in outcome.log_copies.items() if n > 1}
    assert duplicated <= set(outcome.retried)
    over = {i: n for i, n in outcome.log_copies.items() if n > 1 + outcome.retried[i]}
    assert not over, over
    assert set(outcome.log_copies) == set(outcome.acknowledged)
