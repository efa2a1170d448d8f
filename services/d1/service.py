"""The D1 owner service process part: lease client, owner table, HTTP server."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import Self

from eventlog.port import EventLog
from eventlog.private_files import private_dir
from projections.reader import ProjectionReader
from projections.store import ProjectionStore
from services.d1.app import create_d1_app
from services.d1.confinement import DEFAULT_MAX_BYTES, DEFAULT_TIMEOUT_MS
from services.d1.owner import DEFAULT_THREADS, DEFAULT_TTL_MS, Owner
from services.leases import LeaseClient
from services.scheduler.clock import SystemClock
from services.serving import HttpServer

DEFAULT_PORT = 8795


class D1Service:
    """`async with D1Service(log, store, root, internal_token=...) as d1`: serves the
    databases whose files live under `root` (shared by every replica; made readable by
    the platform's user only). `timeout_ms`: a tenant request's time limit; `threads`:
    the worker threads SQLite runs on (docs/d1.md, "Confinement")."""

    def __init__(self, log: EventLog, store: ProjectionStore, root: Path, *,
                 internal_token: str, host: str = "127.0.0.1", port: int = 0,
                 ttl_ms: int = DEFAULT_TTL_MS, timeout_ms: int = DEFAULT_TIMEOUT_MS,
                 threads: int = DEFAULT_THREADS, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.log = log
        self.store = store
        self.root = root
        self.internal_token = internal_token
        self.host = host
        self.port = port
        self.ttl_ms = ttl_ms
        self.timeout_ms = timeout_ms
        self.threads = threads
        self.max_bytes = max_bytes
        self.owner: Owner | None = None
        self.server: HttpServer | None = None

    @property
    def url(self) -> str:
        assert self.server is not None, "D1 service is not started"
        return self.server.url

    @property
    def address(self) -> str:
        assert self.server is not None, "D1 service is not started"
        host, port = self.server.address
        return f"{host}:{port}"

    async def start(self) -> None:
        private_dir(self.root)
        reader = ProjectionReader(self.store)
        # The port is known only once bound, and the holder id names it: bind first.
        owner = Owner(LeaseClient(self.log, reader, SystemClock(), actor="d1"), reader,
                      self.root, self.host, self.port, self.internal_token,
                      ttl_ms=self.ttl_ms, timeout_ms=self.timeout_ms, threads=self.threads,
                      max_bytes=self.max_bytes)
        self.server = HttpServer(create_d1_app(owner, internal_token=self.internal_token),
                                 host=self.host, port=self.port, name="d1")
        await self.server.start()
        owner.host, owner.port = self.server.address
        await owner.start()
        self.owner = owner

    async def stop(self) -> None:
        """Idempotent: the platform may stop it early (before the projector goes)."""
        owner, server = self.owner, self.server
        self.owner = self.server = None
        if owner is not None:
            await owner.stop()
        if server is not None:
            await server.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
