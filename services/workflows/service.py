"""One engine replica: holds the `workflows` lease, runs the engine while it leads.

Replicas coordinate by the fenced owner lease of the control log
(services/leases.py, scope `workflows`): only the holder folds the workflow log
and writes to it, with the lease generation in every record. A replica that
loses the lease (missed renewals, an operator takeover) stops its engine at
once; the next holder re-reads the whole log, so nothing is handed over in
memory. A holder killed with SIGKILL is replaced when its lease expires
(`ttl_ms`). The HTTP API of a standby answers 503 `engine_standby`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import generate_latest

from services.fairshare import NamespaceShares
from services.leases import LeaseClient, LeaseLost
from services.serving import HttpServer
from services.workflows.app import create_app
from services.workflows.engine import Engine, EngineMetrics, Invoker, Limits
from services.workflows.store import WorkflowStore

log = logging.getLogger("wdl.workflows")
SCOPE = "workflows"


@dataclass
class WorkflowsService:
    store: WorkflowStore
    invoker: Invoker
    leases: LeaseClient
    holder: str
    internal_token: str
    host: str = "127.0.0.1"
    port: int = 8798
    ttl_ms: int = 10_000
    tick_ms: int = 500
    limits: Limits = field(default_factory=Limits.from_env)
    metrics: EngineMetrics = field(default_factory=EngineMetrics)
    engine: Engine | None = None
    generation: int = 0
    http: HttpServer | None = None
    _task: asyncio.Task[None] | None = None
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _expires_at: int = 0
    sock: socket.socket | None = None  # pre-bound (the gateway is told the address first)

    @property
    def url(self) -> str:
        assert self.http is not None
        return self.http.url

    def health(self) -> dict[str, Any]:
        alive = self._task is not None and not self._task.done()
        e = self.engine
        return {"ok": alive, "holder": self.holder, "leading": e is not None,
                "generation": self.generation,
                "instances": len(e.states) if e is not None else 0,
                "invocations": e.invocations if e is not None else 0}

    def _scrape(self) -> bytes:
        if self.engine is not None:
            self.engine.observe()
        return generate_latest(self.metrics.registry)

    async def start(self) -> None:
        await self.store.start()
        self.http = HttpServer(create_app(lambda: self.engine, self.internal_token, self.health,
                                          self._scrape),
                               host=self.host, port=self.port, sock=self.sock,
                               name="workflows")
        await self.http.start()
        self._task = asyncio.create_task(self._loop(), name="wdl-workflows")

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.http is not None:
            await self.http.stop()
        await self.store.stop()

    async def leading(self, timeout_s: float) -> bool:
        """Until this replica runs the engine (tests, startup scripts)."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.engine is None and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        return self.engine is not None

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                try:
                    await self._tick()
                except LeaseLost as exc:
                    log.warning("workflows lease lost, standing by: %s", exc)
                    await self._step_down()
                except Exception:
                    log.exception("workflows tick failed")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.tick_ms / 1000)
        finally:
            gen = self.generation
            await self._step_down()
            if gen:
                with contextlib.suppress(Exception):
                    await self.leases.release(SCOPE, self.holder, gen)

    async def _tick(self) -> None:
        now = self.leases.clock.now_ms()
        if self.engine is not None:
            if now >= self._expires_at:
                raise LeaseLost("the lease expired before it was renewed")
            if self._expires_at - now < self.ttl_ms * 2 // 3:
                await self.leases.renew(SCOPE, self.holder, self.generation, self.ttl_ms)
                self._expires_at = now + self.ttl_ms
            return
        if not self.generation:
            generation = await self.leases.acquire(SCOPE, self.holder, self.ttl_ms)
            if generation is None:
                return
            self.generation, self._expires_at = generation, now + self.ttl_ms
        elif now >= self._expires_at:
            self.generation = 0  # held, but the engine never started: take it anew
            return
        generation = self.generation
        shares = NamespaceShares(self.leases.reader.namespace,
                                 {"workflow_slots": self.limits.per_namespace})
        engine = Engine(self.store, self.invoker, limits=self.limits, generation=generation,
                        metrics=self.metrics, shares=shares)
        await engine.start()
        self.engine = engine
        log.info("%s leads the workflows engine at generation %d", self.holder, generation)

    async def _step_down(self) -> None:
        engine, self.engine = self.engine, None
        self.generation = 0
        if engine is not None:
            await engine.stop()
