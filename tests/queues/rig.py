"""Helpers for the Queues tests: a delivery sink the test owns and the producer's route."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from harness.endpoints import ROOT
from tests.sink import SinkServer

PROJECT = ROOT / "tests" / "fixtures" / "queue_project"
TOKEN = "wdl-internal-queues-test-token"


class Sink(SinkServer):
    """Every delivery the consumer worker reports: {queue, id, n, attempts, at}."""

    methods = ["POST"]

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    async def hit(self, request: Request) -> PlainTextResponse:
        self.seen.extend(json.loads(await request.body()))
        return PlainTextResponse("ok")

    @property
    def url(self) -> str:
        return self.base_url + "/hit"

    def counts(self, queue: str = "jobs") -> Counter[int]:
        return Counter(d["n"] for d in self.seen if d["queue"] == queue)

    async def wait_for(self, wanted: set[int], queue: str = "jobs", timeout: float = 60,
                       times: int = 1) -> Counter[int]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            counts = self.counts(queue)
            if all(counts[n] >= times for n in wanted):
                return counts
            await asyncio.sleep(0.1)
        counts = self.counts(queue)
        missing = sorted(n for n in wanted if counts[n] < times)
        raise AssertionError(f"{len(missing)} of {len(wanted)} not delivered to {queue} "
                             f"{times}x in {timeout}s: {missing[:20]}")


class Producer:
    def __init__(self, gateway: str, ns: str, worker: str = "jobs-worker") -> None:
        self.url = f"{gateway}/{worker}/send"
        self.client = httpx.AsyncClient(timeout=60, headers={"host": f"{ns}.workers.local"})

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, body: Any, *, later: bool = False) -> dict[str, Any]:
        r = await self.client.post(self.url, json=body, params={"later": "1"} if later else {})
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer
