"""`python -m projections`: run one live projector replica from the environment.

`WDL_METRICS_PORT` serves Prometheus metrics on 127.0.0.1 (or
`WDL_METRICS_HOST`), behind `WDL_INTERNAL_TOKEN` (scrapers send it as
`Authorization: Bearer`: projections/internal_http.py); `WDL_PROJECTOR_GROUP`
names the consumer group replicas share partitions through (empty: this replica
owns every partition).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Generator

import uvicorn
from prometheus_client import make_asgi_app

from eventlog.kafka import KafkaEventLog
from eventlog.port import EventLog
from projections.internal_http import InternalTokenGuard
from projections.logs import configure as configure_logging
from projections.membership import KafkaGroupMembership
from projections.metrics import ProjectorMetrics
from projections.projector import Projector
from projections.runtime import open_backends, run
from projections.settings import Settings

log = logging.getLogger("wdl.projector")


async def _watch_lag(log_: EventLog, projector: Projector, metrics: ProjectorMetrics) -> None:
    while True:
        with contextlib.suppress(Exception):
            metrics.observe_log_end(await log_.end_positions(), projector.positions())
        await asyncio.sleep(5)


class _Server(uvicorn.Server):
    """uvicorn without its signal capture: main() handles SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


@contextlib.asynccontextmanager
async def _metrics_server(metrics: ProjectorMetrics) -> AsyncIterator[None]:
    port = os.environ.get("WDL_METRICS_PORT")
    if not port:
        yield
        return
    token = os.environ.get("WDL_INTERNAL_TOKEN", "")
    if not token:
        raise SystemExit("WDL_METRICS_PORT needs WDL_INTERNAL_TOKEN: scrapers authenticate "
                         "with it (docs/metrics.md)")
    server = _Server(uvicorn.Config(
        InternalTokenGuard(make_asgi_app(metrics.registry), token),
        host=os.environ.get("WDL_METRICS_HOST", "127.0.0.1"), port=int(port),
        lifespan="off", log_config=None, log_level="warning", access_log=False))
    task = asyncio.create_task(server.serve(), name="projector-metrics")
    try:
        yield
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def main() -> None:
    settings = Settings.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics = ProjectorMetrics()
    async with _metrics_server(metrics), open_backends(settings) as b:
        membership = None
        group = os.environ.get("WDL_PROJECTOR_GROUP", "wdl-projector")
        if isinstance(b.log, KafkaEventLog) and group:
            membership = KafkaGroupMembership(b.log.settings.bootstrap_servers, b.log.topic,
                                              f"{group}.{b.log.topic}")
        projector = Projector(b.log, b.store, b.audit, metrics=metrics)
        lag = asyncio.create_task(_watch_lag(b.log, projector, metrics))
        try:
            await projector.run(stop, membership=membership.__aiter__() if membership else None)
        finally:
            lag.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag


if __name__ == "__main__":
    configure_logging()
    run(main())
