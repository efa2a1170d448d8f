"""Helpers for the Workflows tests: a sink the test owns, the engine's API, the project."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from typing import Any
from urllib.parse import quote

import httpx
from starlette.requests import Request
from starlette.responses import PlainTextResponse

from harness.endpoints import ROOT
from tests.sink import SinkServer

PROJECT = ROOT / "tests" / "fixtures" / "workflow_project"
TOKEN = "wdl-internal-test-token"


class Sink(SinkServer):
    """Counts every step execution the test worker reports, in arrival order."""

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[tuple[str, str, str]] = []

    async def hit(self, request: Request) -> PlainTextResponse:
        q = request.query_params
        self.hits.append((q["id"], q["step"], q["exec"]))
        n = sum(1 for h in self.hits if h[0] == q["id"] and h[1] == q["step"])
        return PlainTextResponse(str(n))

    @property
    def url(self) -> str:
        return self.base_url

    def counts(self) -> Counter[tuple[str, str]]:
        return Counter((i, s) for i, s, _ in self.hits)

    def last_exec(self, instance: str, step: str) -> str | None:
        execs = [e for i, s, e in self.hits if i == instance and s == step]
        return execs[-1] if execs else None


class Tenant:
    """The test worker's routes through the gateway."""

    def __init__(self, gateway: str, ns: str, worker: str = "flows") -> None:
        self.gateway, self.ns, self.worker = gateway, ns, worker
        self.client = httpx.AsyncClient(timeout=30, headers={"host": f"{ns}.workers.local"})

    async def close(self) -> None:
        await self.client.aclose()

    async def call(self, path: str, **query: Any) -> tuple[int, Any]:
        qs = "&".join(f"{k}={quote(v if isinstance(v, str) else json.dumps(v))}"
                      for k, v in query.items())
        r = await self.client.get(f"{self.gateway}/{self.worker}{path}?{qs}")
        return r.status_code, r.json()

    async def batch(self, items: list[dict[str, Any]]) -> list[str]:
        r = await self.client.post(f"{self.gateway}/{self.worker}/batch",
                                   content=json.dumps(items))
        assert r.status_code == 200, r.text
        ids: list[str] = r.json()["ids"]
        return ids

    async def status(self, iid: str) -> dict[str, Any]:
        code, body = await self.call("/status", id=iid)
        assert code == 200, body
        return dict(body)

    async def wait_status(self, iid: str, wanted: set[str], timeout: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            st = await self.status(iid)
            if st["status"] in wanted:
                return st
            if time.monotonic() > deadline:
                raise AssertionError(f"{iid} stayed {st} (wanted {wanted})")
            await asyncio.sleep(0.1)


class EngineApi:
    """The engine's own HTTP API (internal token), as the control API uses it."""

    def __init__(self, url: str, token: str = TOKEN) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.AsyncClient(timeout=10, headers={"x-wdl-internal-token": token})

    async def close(self) -> None:
        await self.client.aclose()

    async def instances(self, ns: str) -> dict[str, dict[str, Any]]:
        """Every instance's summary row (the listing comes in pages, without values)."""
        rows: dict[str, dict[str, Any]] = {}
        params = {"namespace": ns}
        while True:
            r = await self.client.get(f"{self.url}/v1/instances", params=params)
            r.raise_for_status()
            page = r.json()
            rows.update({i["id"]: i for i in page["instances"]})
            if not page.get("cursor"):
                return rows
            params = {"namespace": ns, "cursor": page["cursor"]}

    async def instance(self, ns: str, workflow: str, iid: str) -> dict[str, Any]:
        """One instance whole: params, output and error included."""
        r = await self.client.get(f"{self.url}/v1/instance",
                                  params={"namespace": ns, "workflow": workflow, "id": iid})
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc


def expected_sum(n: int) -> int:
    """What an uninterrupted run of the test workflow returns for params.n = n."""
    return 2 * n + (n + 1) + (1 + 2 + 3) * n
