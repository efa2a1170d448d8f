"""What the queue service's and the workflows engine's `python -m` entry points share.

Both keep a log of their own beside the control log, both run tenant code
through one of the gateway's internal endpoints, and both run until their
service ends or the process is told to stop.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import httpx

from services.settings import Settings

INTERNAL_HEADER = "x-wdl-internal-token"


def sibling_log_url(settings: Settings, env: Mapping[str, str] | None, *, variable: str,
                    suffix: str, group: bool) -> str:
    """`variable` from the environment, else beside the control log: on Kafka the topic
    `<control topic>.<suffix>` of the same cluster (and the consumer group of that name
    when `group`), embedded a SQLite file `<suffix>.sqlite` in the data directory."""
    e = os.environ if env is None else env
    if e.get(variable):
        return e[variable]
    control = urlsplit(settings.event_log_url)
    if control.scheme == "kafka":
        topic = parse_qs(control.query).get("topic", ["wdl.events"])[0]
        url = f"kafka://{control.netloc}?topic={topic}.{suffix}"
        return f"{url}&group={topic}.{suffix}" if group else url
    return f"sqlite://{settings.data_dir / f'{suffix}.sqlite'}"


class GatewayClient:
    """A pooled HTTP client to the gateway's internal endpoints (explicit start/stop)."""

    def __init__(self, gateway_url: str, internal_token: str, *, timeout_s: float,
                 connections: int = 256) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.internal_token = internal_token
        self.timeout_s = timeout_s
        self.connections = connections
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_s,
                                         limits=httpx.Limits(max_connections=self.connections))

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        """POST `body` to `path` with the internal token; httpx.HTTPError when unreachable."""
        if self._client is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return await self._client.post(f"{self.gateway_url}{path}", json=body,
                                       headers={INTERNAL_HEADER: self.internal_token})


class _Service(Protocol):
    async def start(self) -> None: ...
    async def wait(self) -> None: ...
    async def stop(self) -> None: ...


class _Lifecycle(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


def stop_on_signals() -> asyncio.Event:
    """An event SIGINT and SIGTERM set (installed early, so a signal while connecting
    still ends the replica cleanly once it has started)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until_stopped(service: _Service, invoker: _Lifecycle, stop: asyncio.Event) -> None:
    """Start the invoker and the service, run until the service ends or `stop` is set,
    then stop both (the service first: it may still be finishing with the invoker)."""
    await invoker.start()
    await service.start()
    try:
        done = asyncio.ensure_future(service.wait())
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({done, stopping}, return_when=asyncio.FIRST_COMPLETED)
        for task in (done, stopping):
            task.cancel()
    finally:
        await service.stop()
        await invoker.stop()
