"""TailHub: server-side filters, sampling, bounded queues and counted drops; the
data service's tail endpoints (ingest, NDJSON stream with heartbeats)."""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from services.tail.events import TailEvent, parse_event
from services.tail.filters import InvalidFilter, TailFilter
from services.tail.hub import TailHub, TooManySubscribers
from services.tail.interest import TailInterest
from services.tail.routes import tail_routes

pytestmark = pytest.mark.unit


def raw(**over: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "namespace": "acme", "worker": "api", "version": "v1", "ts": 1_800_000_000_000,
        "kind": "fetch", "method": "GET", "url": "https://acme.test/items?id=7",
        "status": 200, "outcome": "ok", "duration_ms": 3,
        "logs": [{"level": "log", "message": ["loaded", {"id": 7}], "ts": 1}],
        "exceptions": []}
    event.update(over)
    return event


def ev(**over: Any) -> TailEvent:
    parsed = parse_event(raw(**over))
    assert parsed is not None
    return parsed


async def drain(sub: Any) -> list[dict[str, Any]]:
    out = []
    while sub.queued or sub.dropped:
        line = await sub.next()
        assert line is not None
        out.append(json.loads(line))
    return out


def test_parse_event_requires_attribution_and_bounds_fields() -> None:
    assert parse_event(raw(namespace="")) is None
    assert parse_event(raw(worker=None)) is None
    assert parse_event("nope") is None
    e = ev(kind="weird", status="200", duration_ms=-5, url="u" * 10_000,
           logs=[{"message": "x" * 100_000}, "junk"])
    assert e.kind == "other" and e.status is None and e.duration_ms is None
    assert len(e.url or "") < 4200
    assert len(e.logs) == 1 and len(e.logs[0]["message"][0]) <= 16 * 1024 + 1


def test_status_classes_and_errors() -> None:
    assert (ev().status_class, ev().is_error) == ("2xx", False)
    assert (ev(status=404).status_class, ev(status=404).is_error) == ("4xx", False)
    assert ev(status=503).is_error
    thrown = ev(status=None, outcome="exception")
    assert (thrown.status_class, thrown.is_error) == ("none", True)
    assert ev(kind="scheduled", status=None).status_class == "none"


@pytest.mark.parametrize("kwargs", [{"status": "maybe"}, {"sample": 0}, {"sample": 1.5},
                                    {"search": "x" * 300}])
def test_invalid_filters_are_refused(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidFilter):
        TailFilter(**kwargs)


def test_filter_from_query() -> None:
    f = TailFilter.from_query({"status": "error", "search": "Boom", "sample": "0.5"})
    assert f == TailFilter(status="error", search="Boom", sample=0.5)
    assert TailFilter.from_query(f.to_query()) == f
    with pytest.raises(InvalidFilter):
        TailFilter.from_query({"sample": "often"})


async def test_only_the_subscribed_worker_and_matching_events_are_delivered() -> None:
    hub = TailHub()
    errors = hub.subscribe("acme", "api", TailFilter(status="error"))
    found = hub.subscribe("acme", "api", TailFilter(search="LOADED"))
    every = hub.subscribe("acme", "api")
    other = hub.subscribe("acme", "web")
    hub.publish(ev(url="https://acme.test/a"))
    hub.publish(ev(url="https://acme.test/b", status=None, outcome="exception", logs=[],
                   exceptions=[{"name": "TypeError", "message": "kaboom", "stack": "at x"}]))
    hub.publish(ev(namespace="other", url="https://x/c"))
    assert [e["url"] for e in await drain(errors)] == ["https://acme.test/b"]
    assert [e["url"] for e in await drain(found)] == ["https://acme.test/a"]
    assert len(await drain(every)) == 2 and await drain(other) == []
    search_exc = hub.subscribe("acme", "api", TailFilter(search="kaboom"))
    hub.publish(ev(exceptions=[{"name": "Error", "message": "KABOOM", "stack": None}]))
    assert len(await drain(search_exc)) == 1


async def test_sampling_keeps_about_the_rate() -> None:
    hub = TailHub(queue_size=10_000, rng=random.Random(7))
    sub = hub.subscribe("acme", "api", TailFilter(sample=0.25))
    for _ in range(4000):
        hub.publish(ev())
    assert 850 < sub.queued < 1150


async def test_a_slow_subscriber_loses_events_and_is_told_how_many() -> None:
    drops: list[int] = []
    hub = TailHub(queue_size=3, on_drop=drops.append)
    slow = hub.subscribe("acme", "api")
    fast = hub.subscribe("acme", "api")
    for i in range(10):
        hub.publish(ev(url=f"https://acme.test/{i}"))
        if fast.queued:
            assert json.loads(await fast.next() or b"")["url"] == f"https://acme.test/{i}"
    assert slow.queued == 3, "the queue is bounded"
    first = json.loads(await slow.next() or b"")
    assert first == {"type": "dropped", "count": 7, "ts": first["ts"]}
    rest = [json.loads(await slow.next() or b"")["url"] for _ in range(3)]
    assert rest == [f"https://acme.test/{i}" for i in range(3)]
    assert sum(drops) == 7 and slow.dropped_total == 7 and fast.dropped_total == 0


async def test_subscriber_limits_and_unsubscribe() -> None:
    hub = TailHub(max_subscribers=3, max_per_worker=2)
    a, _ = hub.subscribe("acme", "api"), hub.subscribe("acme", "api")
    with pytest.raises(TooManySubscribers):
        hub.subscribe("acme", "api")
    hub.subscribe("acme", "web")
    with pytest.raises(TooManySubscribers):
        hub.subscribe("acme", "db")
    hub.unsubscribe(a)
    hub.unsubscribe(a)  # twice is fine
    assert hub.subscribers == 2
    assert hub.publish(ev()) == 1
    assert await a.next() is None, "a closed subscription ends"


async def test_one_namespace_holds_at_most_its_share_of_the_tails() -> None:
    hub = TailHub(max_subscribers=10, max_per_worker=5, max_per_namespace=3)
    mine = [hub.subscribe("greedy", f"w{i}") for i in range(3)]
    with pytest.raises(TooManySubscribers, match="namespace greedy already has 3"):
        hub.subscribe("greedy", "w9")
    hub.subscribe("other", "api")  # another namespace still gets one
    hub.unsubscribe(mine[0])
    hub.unsubscribe(mine[0])  # counted once
    hub.subscribe("greedy", "w9")
    with pytest.raises(TooManySubscribers):
        hub.subscribe("greedy", "w10")


async def test_close_wakes_blocked_readers() -> None:
    hub = TailHub()
    sub = hub.subscribe("acme", "api")
    reader = asyncio.create_task(sub.next())
    await asyncio.sleep(0)
    hub.close()
    assert await asyncio.wait_for(reader, 1) is None
    with pytest.raises(TooManySubscribers):
        hub.subscribe("acme", "api")


class Observer:
    def __init__(self) -> None:
        self.drops: dict[str, int] = {}
        self.received_events = 0

    def received(self, count: int) -> None:
        self.received_events += count

    def dropped(self, stage: str, count: int) -> None:
        self.drops[stage] = self.drops.get(stage, 0) + count


async def test_ingest_and_stream_endpoints() -> None:
    hub, observer = TailHub(), Observer()
    app = Starlette(routes=tail_routes(hub, observer, heartbeat_s=0.05, max_duration_s=0.6))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://data") as client:
        assert (await client.get("/tail/stream", params={"namespace": "acme"})).status_code \
            == 400
        assert (await client.get("/tail/stream", params={
            "namespace": "acme", "worker": "api", "sample": "2"})).status_code == 400
        assert (await client.post("/tail", content=b"{")).status_code == 400

        async def read() -> list[dict[str, Any]]:
            lines = []
            async with client.stream("GET", "/tail/stream", params={
                    "namespace": "acme", "worker": "api", "status": "error"}) as response:
                assert response.headers["content-type"].startswith("application/x-ndjson")
                async for line in response.aiter_lines():
                    lines.append(json.loads(line))
            return lines

        reader = asyncio.create_task(read())
        while hub.subscribers == 0:
            await asyncio.sleep(0.01)
        batch = {"events": [raw(), raw(outcome="exception", status=None), {"worker": "x"}],
                 "dropped": 4}
        assert (await client.post("/tail", json=batch)).status_code == 204
        lines = await asyncio.wait_for(reader, 5)
    kinds = [line["type"] for line in lines]
    assert kinds[0] == "connected" and kinds[-1] == "end" and "heartbeat" in kinds
    events = [line for line in lines if line["type"] == "event"]
    assert [e["outcome"] for e in events] == ["exception"]
    assert lines[-1]["reason"] == "max_duration"
    assert observer.received_events == 2 and observer.drops == {"gateway": 4, "invalid": 1}
    assert hub.subscribers == 0, "the stream's end unsubscribes"


async def test_a_stream_is_connected_only_once_the_state_service_has_the_subscription() -> None:
    hub = TailHub()
    interest = TailInterest(hub)
    reports: list[list[tuple[str, str]]] = []
    release = asyncio.Event()

    async def sink(source: str, pairs: list[tuple[str, str]]) -> None:
        assert source == interest.source
        await release.wait()
        reports.append(pairs)

    interest.sink = sink
    app = Starlette(routes=tail_routes(hub, None, heartbeat_s=5, max_duration_s=0.3,
                                       interest=interest))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://data") as client:
        async def first_line() -> dict[str, Any]:
            async with client.stream("GET", "/tail/stream", params={
                    "namespace": "acme", "worker": "api"}) as response:
                async for line in response.aiter_lines():
                    return dict(json.loads(line))
            raise AssertionError("no line")

        reader = asyncio.create_task(first_line())
        while hub.subscribers == 0:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
        assert not reader.done(), "connected before the state service had it"
        release.set()
        assert (await asyncio.wait_for(reader, 5))["type"] == "connected"
        assert reports[0] == [("acme", "api")]
        while hub.subscribers or len(reports) < 2:
            await asyncio.sleep(0.01)
    assert reports[-1] == [], "the end of the stream is reported too"

    # A state service that does not take it: no stream.
    async def broken(source: str, pairs: list[tuple[str, str]]) -> None:
        raise OSError("refused")

    interest.sink = broken
    async with httpx.AsyncClient(transport=transport, base_url="http://data") as client:
        response = await client.get("/tail/stream", params={"namespace": "acme",
                                                            "worker": "api"})
    assert response.status_code == 503 and response.json()["code"] == "tail_unavailable"
    assert hub.subscribers == 0


def test_a_namespace_cap_can_be_set_per_namespace() -> None:
    # NamespaceShares' "tails" plugs in as a callable: one namespace's operator cap
    # does not change another's.
    hub = TailHub(max_subscribers=10, max_per_worker=5,
                  max_per_namespace=lambda ns: 1 if ns == "small" else 4)
    hub.subscribe("small", "w")
    with pytest.raises(TooManySubscribers, match="at most 1"):
        hub.subscribe("small", "w")
    for _ in range(4):
        hub.subscribe("big", "w")
    assert (hub.held("small"), hub.held("big"), hub.cap("big")) == (1, 4, 4)
