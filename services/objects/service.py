"""The DO host process kind: a supervisor of one workerd that hosts Durable Objects.

Objects must live in exactly one place, so they are not hosted by the gateway
(which runs N workerd processes on one socket): the gateway's namespace binding
(workerd/gateway/do.js) sends every call here. docs/durable-objects.md.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from services.dataplane.workerd_process import WorkerdProcess
from services.objects.config import SOCKET, ObjectsConfig, render
from services.serving import bind


@dataclass(frozen=True)
class ObjectsOptions:
    storage_dir: Path
    state_address: str
    internal_token: str
    host: str = "127.0.0.1"
    port: int = 0
    binary: Path | str | None = None
    egress_allow_loopback: bool = False


class ObjectsHost:
    def __init__(self, options: ObjectsOptions) -> None:
        self.options = options
        self._sock: socket.socket | None = None
        self._proc: WorkerdProcess | None = None

    @property
    def address(self) -> str:
        assert self._sock is not None, "not started"
        host, port = self._sock.getsockname()[:2]
        return f"{host}:{port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def output(self) -> str:
        return self._proc.output() if self._proc is not None else ""

    async def start(self) -> None:
        o = self.options
        o.storage_dir.mkdir(parents=True, exist_ok=True)
        path = o.storage_dir / "objects.capnp"
        path.write_text(render(ObjectsConfig(o.storage_dir, o.state_address, o.internal_token,
                                             o.egress_allow_loopback)))
        self._sock = bind(o.host, o.port)
        self._proc = WorkerdProcess(path, binary=o.binary, socket_fds={SOCKET: self._sock},
                                    ready_path="/__wdl/healthz")
        try:
            await self._proc.start()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        if self._proc is not None:
            await self._proc.stop()
            self._proc = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
