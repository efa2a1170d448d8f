"""An ASGI app served by uvicorn inside the current event loop, with start/stop.

The listening socket is bound in `start()` (or passed in, already bound), so
port 0 works and callers can read the real address before anyone connects.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Generator
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn


class _Server(uvicorn.Server):
    """uvicorn without its signal capture: the process owner handles Ctrl-C and
    stops every server explicitly (several run in one process)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind(host: str, port: int, *, reuseport: bool = False) -> socket.socket:
    """A listening socket, inheritable (passed to workerd with --socket-fd).
    `reuseport`: SO_REUSEPORT, so other sockets of this user may share the port."""
    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY only on sockets that say
    # so, and without it every keep-alive response waits ~40 ms (Nagle + delayed ACK).
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM,
                         socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


class HttpServer:
    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 sock: socket.socket | None = None, name: str = "http",
                 lifespan: Literal["auto", "on", "off"] = "off") -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self.lifespan = lifespan
        self._sock = sock
        self._owns_sock = sock is None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def address(self) -> tuple[str, int]:
        if self._sock is None:
            raise RuntimeError(f"{self.name} server is not started")
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    async def start(self) -> None:
        if self._sock is None:
            self._sock = bind(self.host, self.port)
        # log_config=None: uvicorn's records go through the process's handler (JSON or text).
        config = uvicorn.Config(self.app, lifespan=self.lifespan, log_level="warning",
                                log_config=None,
                                access_log=False, timeout_graceful_shutdown=2)
        self._server = _Server(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._sock]),
                                         name=f"{self.name}-server")
        while not self._server.started:
            if self._task.done():
                await self._task
                raise RuntimeError(f"{self.name} server exited during startup")
            await asyncio.sleep(0.01)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._owns_sock and self._sock is not None:
            self._sock.close()
            self._sock = None

    async def wait(self) -> None:
        """Until the server exits on its own (e.g. a failed lifespan startup)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
