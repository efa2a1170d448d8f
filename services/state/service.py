"""The state service process part: route view + bundles + HTTP server + change watcher."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Self

from eventlog.port import EventLog
from projections.reader import ProjectionReader
from projections.store import ProjectionStore
from services.blobstore import BlobStore
from services.crypto import Keyring
from services.serving import HttpServer
from services.state.app import create_state_app
from services.state.bundles import BundleSource
from services.state.incidents import IncidentDesk, IncidentPolicy
from services.state.instances import LoadRegistry
from services.state.leases import GatewayLeases
from services.state.quarantine import Striker
from services.state.tails import TailedSet
from services.state.view import RouteView

log = logging.getLogger("wdl.state")
DEFAULT_DOMAIN = "workers.local"


class StateService:
    """`async with StateService(store, blobs, keyring, port=8790) as state: state.url`."""

    def __init__(self, store: ProjectionStore, blobs: BlobStore, keyring: Keyring, *,
                 host: str = "127.0.0.1", port: int = 0, domain: str = DEFAULT_DOMAIN,
                 partitions: int | None = None, log: EventLog | None = None,
                 internal_token: str = "", incidents: IncidentPolicy | None = None,
                 lease_ms: int = 0, host_verification: bool = False) -> None:
        self.view = RouteView(store, partitions=partitions,
                              verified_hosts_only=host_verification)
        # lease_ms > 0 only where every control API that writes calls propagate()
        # before acknowledging (docs/dataplane.md, "Read-your-writes").
        self.leases = GatewayLeases(self.view, lease_ms=lease_ms, internal_token=internal_token)
        self.loads = LoadRegistry()
        self.tails = TailedSet(self.view, self.leases.propagate)
        self.desk = IncidentDesk(incidents)
        # Without the log (tests, read-only replicas) incidents are concluded, never acted on.
        striker = Striker(log, ProjectionReader(store), self.desk.policy) \
            if log is not None else None
        app = create_state_app(self.view, BundleSource(self.view, blobs, keyring), self.loads,
                               domain=domain, desk=self.desk, striker=striker,
                               internal_token=internal_token, leases=self.leases,
                               tails=self.tails)
        self.server = HttpServer(app, host=host, port=port, name="state")
        self._watcher: asyncio.Task[None] | None = None

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def address(self) -> str:
        host, port = self.server.address
        return f"{host}:{port}"

    async def start(self) -> None:
        await self.view.sync()
        await self.leases.start()
        await self.server.start()
        self._watcher = asyncio.create_task(self._watch(), name="state-watch")

    async def _watch(self) -> None:
        # Proactive refresh on the change feed, so a gateway's barrier usually
        # finds the cache already current. Correctness does not depend on it:
        # every barrier re-reads the applied position itself, and the control API
        # propagates before it acknowledges. Pushing here too reaches lease holders
        # with what no API call propagates (rebuilds, probation, quarantine).
        while True:
            try:
                await self.view.store.wait_for_change(1.0)
                await self.tails.expire()
                await self.leases.propagate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("state refresh failed: %s", exc)
                await asyncio.sleep(0.5)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
            self._watcher = None
        await self.server.stop()
        await self.leases.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
