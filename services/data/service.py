"""The data service process part: KV and R2 stores, the resource index, the live tail
hub, its metrics and the HTTP server."""

from __future__ import annotations

import contextlib
from types import TracebackType
from typing import Any, Self

from projections.reader import ProjectionReader
from projections.store import ProjectionStore
from services.data.app import create_data_app
from services.data.invocations import invocation_routes
from services.data.metrics import DataMetrics
from services.data.resources import ResourceIndex
from services.fairshare import NamespaceShares
from services.serving import HttpServer
from services.tail.hub import DEFAULT_MAX_PER_NAMESPACE, TailHub
from services.tail.interest import TailInterest, http_sink
from services.tail.routes import tail_routes


class DataService:
    """`async with DataService(store, kv_url=..., r2_url=..., internal_token=...) as data`.

    The stores are opened in `start()`; `kv` and `r2` are None before that.
    """

    def __init__(self, store: ProjectionStore, *, kv_url: str, r2_url: str,
                 internal_token: str, host: str = "127.0.0.1", port: int = 0,
                 metrics: DataMetrics | None = None, tail_heartbeat_s: float = 10.0,
                 state_url: str | None = None) -> None:
        self.projection = store
        self.kv_url = kv_url
        self.r2_url = r2_url
        self.internal_token = internal_token
        self.host = host
        self.port = port
        self.index = ResourceIndex(store)
        self.metrics = metrics or DataMetrics()
        # Each namespace's tails: its `limits` (`wdl ns limits set --tails N`), else the
        # hub's default (a quarter of the hub, so one namespace never holds them all).
        self.shares = NamespaceShares(ProjectionReader(store).namespace,
                                      {"tails": DEFAULT_MAX_PER_NAMESPACE})
        self.tail = TailHub(on_drop=lambda n: self.metrics.dropped("subscriber", n),
                            max_per_namespace=self.shares.of("tails"),
                            metrics=self.metrics.fairshare)
        self.metrics.tail_subscribers.set_function(lambda: self.tail.subscribers)
        self.tail_heartbeat_s = tail_heartbeat_s
        # Who learns the tailed workers (services/tail/interest.py): the state service at
        # `state_url`, or one in this process (the platform sets `interest.sink`).
        self.interest = TailInterest(self.tail)
        self.state_url = state_url
        self.kv: Any = None
        self.r2: Any = None
        self.ratelimit: Any = None
        self.server: HttpServer | None = None
        self._stack = contextlib.AsyncExitStack()

    @property
    def url(self) -> str:
        assert self.server is not None, "data service is not started"
        return self.server.url

    @property
    def address(self) -> str:
        assert self.server is not None, "data service is not started"
        host, port = self.server.address
        return f"{host}:{port}"

    async def start(self) -> None:
        # Imported here: each store pulls in its own client library.
        from services.kv.factory import open_kv_store
        from services.kv.routes import kv_routes
        from services.r2.factory import open_r2_store
        from services.r2.routes import r2_routes
        from services.ratelimit.routes import ratelimit_routes
        from services.ratelimit.store import ratelimit_store_from_kv_url

        try:
            self.kv = await self._stack.enter_async_context(open_kv_store(self.kv_url))
            self.r2 = await self._stack.enter_async_context(open_r2_store(self.r2_url))
            self.ratelimit = ratelimit_store_from_kv_url(self.kv_url)
            await self.ratelimit.start()
            self._stack.push_async_callback(self.ratelimit.stop)
            await self.index.start()
            self._stack.push_async_callback(self.index.stop)
            if self.state_url:
                import httpx

                client = await self._stack.enter_async_context(
                    httpx.AsyncClient(timeout=5.0, trust_env=False))
                self.interest.sink = http_sink(client, self.state_url, self.internal_token)
            self.interest.start()
            self._stack.push_async_callback(self.interest.stop)
            app = create_data_app({
                "kv": kv_routes(self.kv, self.index.checker("kv")),
                "r2": r2_routes(self.r2, self.index.checker("r2")),
                "ratelimit": ratelimit_routes(self.ratelimit),
            }, internal_token=self.internal_token, metrics=self.metrics,
                extra=[*tail_routes(self.tail, self.metrics, heartbeat_s=self.tail_heartbeat_s,
                                    interest=self.interest,
                                    refresh_share=self.shares.refresh),
                       *invocation_routes(self.metrics)])
            self.server = HttpServer(app, host=self.host, port=self.port, name="data")
            await self.server.start()
            self._stack.push_async_callback(self.server.stop)
            # Runs before the server stops: open tail streams end, so shutdown need not wait.
            self._stack.callback(self.tail.close)
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        await self._stack.aclose()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
