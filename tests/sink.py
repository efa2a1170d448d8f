"""A sink the test owns: an HTTP server on a free loopback port that tenant code reports to.

What a sink records and answers differs per test (subclasses implement `hit`); starting,
stopping and addressing it do not.
"""

from __future__ import annotations

from types import TracebackType
from typing import Self

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from services.serving import HttpServer


class SinkServer:
    path = "/hit"
    methods: list[str] | None = None  # Starlette's default: GET (and HEAD)

    def __init__(self) -> None:
        self.server: HttpServer | None = None

    async def hit(self, request: Request) -> PlainTextResponse:
        raise NotImplementedError

    async def start(self) -> None:
        self.server = HttpServer(Starlette(routes=[Route(self.path, self.hit,
                                                         methods=self.methods)]),
                                 port=0, name="sink")
        await self.server.start()

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()

    @property
    def base_url(self) -> str:
        assert self.server is not None
        return self.server.url

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.stop()
