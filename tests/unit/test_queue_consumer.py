"""The queue consumer's bookkeeping and the producer endpoint's limits, without I/O: what
may be committed, how an outcome settles each message, and the refusals' words."""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import pytest

from services.queues.app import Refused, parse_send
from services.queues.bounds import QueueBounds
from services.queues.consumer import Consumer, Tracker, _Queue
from services.queues.invoke import Invocation, classify
from services.queues.metrics import QueueMetrics
from services.queues.model import QueueMessage
from services.queues.store import Delivery


def delivery(offset: int, *, partition: int = 0, attempts: int = 1, mid: str = "") -> Delivery:
    return Delivery(partition, offset, 1, QueueMessage(
        id=mid or f"m{offset}", namespace="acme", queue="jobs", body=b"{}",
        content_type="json", timestamp=0, attempts=attempts))


def test_commits_stop_below_the_lowest_unfinished_offset() -> None:
    t = Tracker()
    t.assign({0: 1, 1: 1})
    ds = [delivery(i) for i in range(5)] + [delivery(0, partition=1)]
    assert all(t.read(d) for d in ds)
    t.finish(ds[0])
    t.finish(ds[2])
    assert t.commits() == {0: 1, 1: 0}
    t.committed_to(t.commits())
    for d in (ds[1], ds[3], ds[4], ds[5]):
        t.finish(d)
    assert t.commits() == {0: 5, 1: 1}
    # A reassigned partition starts over: what was read before it is not committed.
    t.committed_to(t.commits())
    t.assign({0: 2})
    assert not t.read(delivery(5))  # read under the old assignment
    assert t.commits() == {}


class _Log:
    on_assign = None

    def __init__(self) -> None:
        self.appended: list[QueueMessage] = []

    async def append(self, messages: Sequence[QueueMessage]) -> None:
        self.appended.extend(messages)


async def _settle(answer: dict[str, Any], batch: list[Delivery],
                  settings: dict[str, Any]) -> tuple[Consumer, _Log]:
    log = _Log()
    consumer = Consumer(log, None, None, QueueMetrics(), clock=lambda: 1000.0)  # type: ignore[arg-type]
    consumer.tracker.assign({0: 1})
    for d in batch:
        consumer.tracker.read(d)
    await consumer._settle("acme", "jobs", settings, batch, answer)
    return consumer, log


async def test_an_explicit_call_wins_then_the_batch_then_the_outcome() -> None:
    batch = [delivery(0), delivery(1), delivery(2)]
    consumer, log = await _settle({"outcome": "exception", "explicitAcks": ["m0"],
                                   "retryMessages": [{"msgId": "m1", "delaySeconds": 7}],
                                   "retryBatch": {"retry": False}, "ackAll": False},
                                  batch, {"max_retries": 3, "retry_delay": 2})
    again = {m.id: m for m in log.appended}
    assert sorted(again) == ["m1", "m2"]  # m0 was acked before the handler threw
    assert again["m1"].attempts == 2 and again["m1"].not_before == 1_000_000 + 7000
    assert again["m2"].not_before == 1_000_000 + 2000  # the consumer's retry_delay
    assert consumer.tracker.commits() == {0: 3}  # all finished: acked or re-appended


async def test_past_max_retries_to_the_dlq_or_dropped_and_counted() -> None:
    batch = [delivery(0, attempts=3)]
    answer = {"outcome": "ok", "retryBatch": {"retry": True}}
    _, log = await _settle(answer, batch, {"max_retries": 2, "dead_letter_queue": "dlq"})
    assert [(m.queue, m.attempts, m.id) for m in log.appended] == [("dlq", 1, "m0")]
    consumer, log = await _settle(answer, batch, {"max_retries": 2})
    assert log.appended == []
    dropped = consumer.metrics.dropped.labels("acme", "max_retries_no_dlq")._value.get()
    assert dropped == 1
    assert consumer.tracker.commits() == {0: 1}


def _body(n: int) -> str:
    return base64.b64encode(b"x" * n).decode()


def test_send_limits_and_delays() -> None:
    base = {"namespace": "acme", "queue": "jobs"}
    ok = parse_send({**base, "messages": [{"body": _body(128_000), "contentType": "text"}]},
                    5, 1000)
    assert ok[0].not_before == 6000  # the queue's delivery_delay
    own = parse_send({**base, "delay": "2", "delaySeconds": 3,
                      "messages": [{"body": _body(1), "delaySeconds": 0}]}, 5, 1000)
    assert own[0].not_before == 0  # the message's own delay wins, even 0
    cases: list[tuple[dict[str, Any], str]] = [
        ({"messages": [{"body": _body(128_001)}]}, "message length of 128001 bytes exceeds "
         "limit of 128000"),
        ({"messages": [{"body": _body(1)}] * 101}, "batch message count of 101 exceeds "
         "limit of 100"),
        ({"messages": [{"body": _body(100_000)}] * 3}, "batch size of 300000 bytes exceeds "
         "limit of 256000"),
        ({"messages": [{"body": _body(1), "contentType": "xml"}]}, "Unknown content type 'xml'"),
        ({"messages": [{"body": _body(1), "delaySeconds": 43_201}]},
         "delaySeconds must be a number of seconds from 0 to 43200"),
        ({"messages": []}, "sendBatch() requires at least one message"),
    ]
    for extra, message in cases:
        with pytest.raises(Refused) as caught:
            parse_send({**base, **extra}, 0, 1000)
        assert caught.value.message == message


async def test_a_deleted_queue_drops_its_messages_and_one_without_consumer_keeps_them() -> None:
    docs: dict[str, dict[str, Any] | None] = {"jobs": {"consumer": None}}

    async def lookup(ns: str, queue: str) -> dict[str, Any] | None:
        return docs["jobs"]

    consumer = Consumer(_Log(), None, lookup, QueueMetrics(), clock=lambda: 1000.0)  # type: ignore[arg-type]
    consumer.tracker.assign({0: 1})
    for d in (delivery(0), delivery(1)):
        consumer.tracker.read(d)
        consumer._admit(d)
    await consumer._flush()
    assert len(consumer.held("acme/jobs")) == 2 and consumer.tracker.commits() == {0: 0}
    docs["jobs"] = None
    consumer._settings.clear()
    await consumer._flush()
    assert consumer.held("acme/jobs") == [] and consumer.tracker.commits() == {0: 2}
    assert consumer.metrics.dropped.labels("acme", "queue_deleted")._value.get() == 2


def _msg(mid: str, *, queue: str = "jobs", size: int = 10, not_before: int = 0,
         timestamp: int = 0) -> QueueMessage:
    return QueueMessage(id=mid, namespace="acme", queue=queue, body=b"x" * size,
                        content_type="json", timestamp=timestamp, not_before=not_before)


async def test_held_messages_are_appended_again_only_for_the_traffic_they_unblock() -> None:
    now = [1000.0]

    async def lookup(ns: str, queue: str) -> dict[str, Any] | None:
        return {"consumer": None}  # a dead-letter queue nobody consumes

    for min_gain, moved in ((0, ["late", "m0", "m1"]), (1000, [])):
        log = _Log()
        consumer = Consumer(log, None, lookup, QueueMetrics(), clock=lambda: now[0],  # type: ignore[arg-type]
                            bounds=QueueBounds(park_min_gain_bytes=min_gain))
        consumer.tracker.assign({0: 1})
        held = [Delivery(0, 0, 1, _msg("m0")), Delivery(0, 1, 1, _msg("m1")),
                Delivery(0, 2, 1, _msg("late", queue="other", size=0,
                                       not_before=int((now[0] + 3600) * 1000)))]
        others = [Delivery(0, o, 1, _msg(f"x{o}", queue="busy", size=100)) for o in range(3, 7)]
        soon = Delivery(0, 7, 1, _msg("soon", queue="other",
                                      not_before=int((now[0] + 40) * 1000)))
        for d in [*held, *others, soon]:
            consumer.tracker.read(d)
        for d in [*held, soon]:
            consumer._admit(d)
        for d in others:  # others' traffic, finished behind the held ones
            consumer.tracker.finish(d)
        await consumer._flush()
        await consumer._park()
        assert log.appended == [] and consumer.tracker.commits() == {0: 0}
        now[0] += 31
        await consumer._park()
        # Moving m0, m1 and late frees 400 bytes of others' messages: worth their 20
        # bytes, not a 1000-byte minimum. "soon" is due within the window: it stays.
        assert sorted(m.id for m in log.appended) == moved
        assert consumer.tracker.commits() == ({0: 7} if moved else {0: 0})
        assert consumer.parked == len(moved)
        now[0] -= 31


async def test_past_the_retention_period_a_held_message_is_dropped() -> None:
    async def lookup(ns: str, queue: str) -> dict[str, Any] | None:
        return {"consumer": None}

    now = 10 * 86_400.0
    consumer = Consumer(_Log(), None, lookup, QueueMetrics(), clock=lambda: now,  # type: ignore[arg-type]
                        bounds=QueueBounds(retention_s=86_400))
    consumer.tracker.assign({0: 1})
    old = Delivery(0, 0, 1, _msg("old", timestamp=int((now - 86_401) * 1000)))
    young = Delivery(0, 1, 1, _msg("young", timestamp=int((now - 100) * 1000)))
    for d in (old, young):
        consumer.tracker.read(d)
        consumer._weigh(d)
        consumer._admit(d)
    assert [d.message.id for d in consumer.held("acme/jobs")] == ["young"]
    assert consumer.backlog == {"acme/jobs": 10}
    assert consumer.metrics.dropped.labels("acme", "retention")._value.get() == 1


class _Invoker:
    def __init__(self, result: Invocation) -> None:
        self.result = result
        self.calls = 0

    async def invoke(self, namespace: str, worker: str, queue: str,
                     messages: list[dict[str, Any]]) -> Invocation:
        self.calls += 1
        return self.result


async def _deliver(result: Invocation, settings: dict[str, Any],
                   batch: list[Delivery]) -> tuple[Consumer, _Log]:
    log = _Log()
    consumer = Consumer(log, _Invoker(result), None, QueueMetrics(),  # type: ignore[arg-type]
                        clock=lambda: 1000.0)
    consumer.tracker.assign({0: 1})
    for d in batch:
        consumer.tracker.read(d)
    q = consumer.queues.setdefault("acme/jobs", _Queue())
    q.running += 1
    consumer.started["acme"] = 1
    await consumer._deliver("acme/jobs", q, {"worker": "w", **settings}, batch)
    return consumer, log


async def test_a_failed_batch_counts_an_attempt_and_ends_in_the_dlq() -> None:
    settings = {"max_retries": 0, "dead_letter_queue": "dlq"}
    consumer, log = await _deliver(Invocation.failed("timeout"), settings, [delivery(0)])
    assert [(m.queue, m.id) for m in log.appended] == [("dlq", "m0")]
    assert consumer.tracker.commits() == {0: 1}
    assert consumer.metrics.failures.labels("acme", "timeout")._value.get() == 1
    # An undecodable message is a failed attempt of its own; the rest of the batch ran.
    answer = {"outcome": "ok", "undecodable": [{"id": "m1", "error": "SyntaxError"}]}
    consumer, log = await _deliver(Invocation.ran(answer), {"max_retries": 1},
                                   [delivery(0), delivery(1)])
    assert [(m.id, m.attempts) for m in log.appended] == [("m1", 2)]


async def test_a_batch_the_platform_could_not_run_backs_off_without_counting() -> None:
    consumer, log = await _deliver(Invocation.not_run("worker_not_found"), {"max_retries": 0},
                                   [delivery(0)])
    assert log.appended == [] and consumer.tracker.commits() == {0: 0}
    assert [due for due, _, _ in consumer.delayed] == [1_000_000 + 1000]
    assert consumer._not_run == {"m0": 1}


def test_the_gateways_answers_are_classified() -> None:
    assert classify(200, {"outcome": "ok"}).kind == "ran"
    assert classify(503, {"error": "queue_invoke_failed"}).kind == "failed"
    assert classify(503, {"error": "worker_not_found"}).kind == "not_run"
    assert classify(500, None).kind == "failed"
    assert classify(200, {"nothing": 1}).kind == "failed"
