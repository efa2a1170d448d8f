"""The DO host process kind: a supervisor of one workerd that hosts Durable Objects.

Objects must live in exactly one place, so they are not hosted by the gateway
(which runs N workerd processes on one socket): the gateway's namespace binding
(workerd/gateway/do.js) sends every call here. Several hosts may share the public
port (SO_REUSEPORT); each serves only the shards whose lease it holds and
forwards the rest to the holder's private socket (ownership.py). A watchdog
replaces the workerd when it hangs or dies, on the same sockets (watchdog.py).
docs/durable-objects.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
from dataclasses import dataclass
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from eventlog.private_files import private_dir, write_private
from services.dataplane.workerd_process import WorkerdProcess
from services.internal import InternalTokenGuard
from services.leases import LeaseClient
from services.objects.config import PRIVATE_SOCKET, SOCKET, ObjectsConfig, render
from services.objects.ownership import Ownership, holder_name, shard_scope
from services.objects.watchdog import ObjectsWatchdog
from services.scheduler.clock import Clock, SystemClock
from services.serving import HttpServer, bind
from services.state.quarantine import Striker


@dataclass(frozen=True)
class ObjectsOptions:
    storage_dir: Path
    state_address: str
    internal_token: str
    host: str = "127.0.0.1"
    port: int = 0
    binary: Path | str | None = None
    egress_allow_loopback: bool = False
    ttl_ms: int = 10_000  # shard lease (WDL_OBJECTS_LEASE_TTL_MS)
    data_address: str = ""  # host:port of the data service (KV/R2 inside objects)
    d1_address: str = ""  # host:port of a D1 replica (D1 inside objects)
    hyperdrive_address: str = ""  # host:port of the Hyperdrive pooler (connect() of objects)


def _shared_socket(host: str, port: int) -> socket.socket:
    # Every DO host of the deployment listens on the same port: the gateway calls one
    # address, and the kernel stops sending to a host that died.
    return bind(host, port, reuseport=True)


class ObjectsHost:
    def __init__(self, options: ObjectsOptions, leases: LeaseClient | None = None,
                 clock: Clock | None = None) -> None:
        self.options = options
        self.leases = leases
        self.clock = clock or SystemClock()
        self.ownership: Ownership | None = None
        self._sock: socket.socket | None = None
        self._private: socket.socket | None = None
        self._proc: WorkerdProcess | None = None
        self._supervisor: HttpServer | None = None
        self._address = ""
        self._private_address = ""
        self._config_dir: Path | None = None
        self.watchdog: ObjectsWatchdog | None = None
        self._watch: asyncio.Task[None] | None = None

    @property
    def config_path(self) -> Path | None:
        """The generated workerd config (it holds the internal token: mode 0600 in a
        0700 directory of its own, removed on stop)."""
        if self._config_dir is None:
            return None
        return self._config_dir / "objects.capnp"

    @property
    def address(self) -> str:
        assert self._address, "not started"
        return self._address

    @property
    def private_address(self) -> str:
        assert self._private_address, "not started"
        return self._private_address

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def output(self) -> str:
        return self._proc.output() if self._proc is not None else ""

    async def _owner(self, request: Request) -> JSONResponse:
        q = request.query_params
        if self.ownership is None:
            # Without a log (a lone host): it owns everything.
            return JSONResponse({"mine": True, "generation": 0})
        try:
            scope = shard_scope(q["namespace"], q["script"], q["class_name"], int(q["shard"]))
            verdict = await self.ownership.owner(scope)
        except (KeyError, ValueError) as exc:
            return JSONResponse({"mine": False, "reason": f"bad request: {exc}"}, 400)
        except Exception as exc:  # fail closed: no verdict, no service
            return JSONResponse({"mine": False, "reason": f"lease check failed: {exc}"}, 503)
        return JSONResponse({"mine": verdict.mine, "generation": verdict.generation,
                             "address": verdict.address, "reason": verdict.reason,
                             "scope": scope, "valid_ms": verdict.valid_ms})

    async def _enter(self, request: Request) -> JSONResponse:
        # Careful mode's announcements (workerd/objects/careful.js).
        try:
            body = await request.json()
            token, namespace = str(body["token"]), str(body["namespace"])
            script = str(body.get("script") or "")
            done = [str(t) for t in body.get("done") or []][:256]
        except (ValueError, KeyError, TypeError) as exc:
            return JSONResponse({"ok": False, "reason": f"bad request: {exc}"}, 400)
        if self.watchdog is not None and namespace and script:
            self.watchdog.announced.enter(token, namespace[:128], script[:128], done)
        return JSONResponse({"ok": True})

    async def start(self) -> None:
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        o = self.options
        # Every object's SQLite file is in here: the platform's user only (workerd makes
        # the files themselves 0600 too, see WorkerdProcess).
        private_dir(o.storage_dir)
        self._sock = _shared_socket(o.host, o.port)
        self._private = bind(o.host, 0)
        self._address = "{}:{}".format(*self._sock.getsockname()[:2])
        self._private_address = "{}:{}".format(*self._private.getsockname()[:2])
        if self.leases is not None:
            holder = holder_name(self.private_address, os.getpid())
            self.ownership = Ownership(
                self.leases, self.clock, holder, ttl_ms=o.ttl_ms,
                alive=lambda: self._proc is not None and self._proc.running)
            await self.ownership.start()
        # Behind the internal token: an ownership verdict names lease generations, and
        # asking for one may append a lease event (services/objects/ownership.py).
        self._supervisor = HttpServer(
            InternalTokenGuard(Starlette(routes=[
                Route("/owner", self._owner),
                Route("/enter", self._enter, methods=["POST"])]), o.internal_token),
            host="127.0.0.1", port=0, name="objects-supervisor")
        await self._supervisor.start()
        # The config holds the internal token: never in the (shared) storage dir, only in
        # a directory of this process's own that no other user may enter.
        self._config_dir = Path(tempfile.mkdtemp(prefix="wdl-objects-"))  # mode 0700
        await self._spawn(0)
        striker = None if self.leases is None else Striker(self.leases.log,
                                                            self.leases.reader)
        self.watchdog = ObjectsWatchdog(
            lambda: self._proc, self._spawn,
            f"http://{self.private_address}/__wdl/healthz", o.internal_token,
            striker=striker)
        self._watch = asyncio.create_task(self.watchdog.run(), name="objects-watchdog")

    async def _spawn(self, careful_until_ms: int) -> None:
        """A workerd on this host's sockets (they outlive it: a replacement takes what
        was queued), in careful mode until `careful_until_ms` (watchdog.py)."""
        o = self.options
        assert self._supervisor is not None and self._config_dir is not None
        assert self._sock is not None and self._private is not None
        sup_host, sup_port = self._supervisor.address[:2]
        path = write_private(self._config_dir / "objects.capnp", render(ObjectsConfig(
            o.storage_dir, o.state_address, o.internal_token, o.egress_allow_loopback,
            supervisor_address=f"{sup_host}:{sup_port}", data_address=o.data_address,
            d1_address=o.d1_address, careful_until_ms=careful_until_ms,
            hyperdrive_address=o.hyperdrive_address)))
        process = WorkerdProcess(path, binary=o.binary,
                                 socket_fds={SOCKET: self._sock,
                                             PRIVATE_SOCKET: self._private},
                                 ready_sockets=(PRIVATE_SOCKET,), ready_path="/__wdl/healthz")
        await process.start()
        self._proc = process

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        if self._proc is not None:
            await self._proc.stop()
            self._proc = None
        if self.ownership is not None:
            await self.ownership.stop()
            self.ownership = None
        if self._supervisor is not None:
            await self._supervisor.stop()
            self._supervisor = None
        for sock in (self._sock, self._private):
            if sock is not None:
                sock.close()
        self._sock = self._private = None
        if self._config_dir is not None:
            shutil.rmtree(self._config_dir, ignore_errors=True)
            self._config_dir = None
