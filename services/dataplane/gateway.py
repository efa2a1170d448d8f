"""Run the gateway workerd and recycle it to release isolates of old versions.

workerd's workerLoader keeps every named isolate for the life of the process,
so versions replaced by a promote stay in memory. The supervisor asks the
state service how many loader ids its current process holds that no route
points at any more ("stale"), and when that passes `max_stale` (or the total
passes `max_loaded`) it *recycles*: a new workerd is started on the same
listening socket (the fd is shared; both processes accept during the
overlap), and once the new one answers on its private socket the old one gets
SIGTERM. Requests keep flowing throughout; the new process reloads each
active version on its first request (a cold load, ~ms).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from services.dataplane.config import (
    PRIVATE_SOCKET,
    PUBLIC_SOCKET,
    GatewayOptions,
    render_gateway_config,
)
from services.dataplane.workerd_process import WorkerdProcess
from services.serving import bind

log = logging.getLogger("wdl.gateway")
READY_PATH = "/__wdl/healthz"


@dataclass(frozen=True)
class RecyclePolicy:
    max_stale: int = 64      # recycle when this many loaded ids are no longer routed
    max_loaded: int = 1000   # ... or when this many ids are loaded in total
    interval: float = 5.0    # seconds between checks; 0 disables automatic recycling


@dataclass(frozen=True)
class RecycleReport:
    reason: str
    old_instance: str
    new_instance: str
    seconds: float


@dataclass
class _Instance:
    name: str
    process: WorkerdProcess
    private: socket.socket
    config: Path


class Gateway:
    def __init__(self, options: GatewayOptions, *, state_url: str, host: str = "127.0.0.1",
                 port: int = 8080, sock: socket.socket | None = None,
                 binary: str | Path | None = None, policy: RecyclePolicy | None = None,
                 stop_timeout: float = 10.0) -> None:
        self.options = options
        self.state_url = state_url.rstrip("/")
        self.host = host
        self.port = port
        # WORKERD_BIN (set by the harness and the Docker image) before the pinned npm copy.
        self.binary = binary or os.environ.get("WORKERD_BIN") or None
        self.policy = policy or RecyclePolicy()
        self.stop_timeout = stop_timeout
        self.recycles: list[RecycleReport] = []
        self._sock = sock
        self._owns_sock = sock is None
        self._current: _Instance | None = None
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._lock = asyncio.Lock()
        self._client: httpx.AsyncClient | None = None
        self._watch: asyncio.Task[None] | None = None

    # --- lifecycle ---------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError("gateway is not started")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    @property
    def instance(self) -> str | None:
        return self._current.name if self._current else None

    @property
    def pid(self) -> int | None:
        return self._current.process.pid if self._current else None

    def output(self) -> str:
        return self._current.process.output() if self._current else ""

    async def start(self) -> None:
        if self._sock is None:
            self._sock = bind(self.host, self.port)
        self._dir = tempfile.TemporaryDirectory(prefix="wdl-gateway-")
        self._client = httpx.AsyncClient(timeout=5.0)
        self._current = await self._spawn()
        if self.policy.interval > 0:
            self._watch = asyncio.create_task(self._watch_loop(), name="gateway-recycler")

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        async with self._lock:
            if self._current is not None:
                await self._retire(self._current)
                self._current = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
        if self._owns_sock and self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # --- instances ---------------------------------------------------------------

    async def _spawn(self) -> _Instance:
        assert self._sock is not None and self._dir is not None
        name = f"gw-{secrets.token_hex(6)}"
        config = Path(self._dir.name) / f"{name}.capnp"
        config.write_text(render_gateway_config(self.options, name), encoding="utf-8")
        private = bind("127.0.0.1", 0)
        process = WorkerdProcess(
            config, binary=self.binary, ready_path=READY_PATH,
            socket_fds={PUBLIC_SOCKET: self._sock, PRIVATE_SOCKET: private},
            stop_timeout=self.stop_timeout)
        try:
            await process.start()
        except BaseException:
            private.close()
            raise
        log.info("gateway workerd %s started (pid %s)", name, process.pid)
        return _Instance(name, process, private, config)

    async def _retire(self, instance: _Instance) -> None:
        await instance.process.stop()
        instance.private.close()
        instance.config.unlink(missing_ok=True)

    async def recycle(self, reason: str = "requested") -> RecycleReport:
        """Replace the workerd process without refusing a connection."""
        async with self._lock:
            old = self._current
            if old is None:
                raise RuntimeError("gateway is not started")
            started = time.perf_counter()
            new = await self._spawn()
            self._current = new
            await self._retire(old)
            report = RecycleReport(reason, old.name, new.name, time.perf_counter() - started)
        self.recycles.append(report)
        log.info("gateway recycled (%s): %s -> %s in %.0f ms", reason, old.name, new.name,
                 report.seconds * 1000)
        return report

    # --- policy ------------------------------------------------------------------

    async def stats(self) -> dict[str, int]:
        """Loaded and stale loader ids of the current instance, per the state service."""
        assert self._client is not None
        instance = self.instance
        response = await self._client.get(f"{self.state_url}/stats",
                                          params={"instance": instance or ""})
        response.raise_for_status()
        body = response.json()
        return {"loaded": int(body["loaded"]), "stale": int(body["stale"])}

    async def _watch_loop(self) -> None:
        last_check = time.monotonic()
        while True:
            await asyncio.sleep(min(1.0, self.policy.interval))
            current = self._current
            if current is not None and not current.process.running:
                log.error("gateway workerd %s exited:\n%s", current.name,
                          current.process.output()[-2000:])
                await self.recycle("workerd exited")
                continue
            if time.monotonic() - last_check < self.policy.interval:
                continue
            last_check = time.monotonic()
            try:
                counts = await self.stats()
            except (httpx.HTTPError, KeyError, ValueError) as exc:
                log.debug("recycle check skipped: %s", exc)
                continue
            if counts["stale"] >= self.policy.max_stale:
                await self.recycle(f"{counts['stale']} stale isolates")
            elif counts["loaded"] >= self.policy.max_loaded:
                await self.recycle(f"{counts['loaded']} loaded isolates")
