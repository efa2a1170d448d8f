"""`python -m services.scheduler`: one scheduler replica from the environment.

WDL_SCHEDULER_ID (default host-pid), WDL_SCHEDULER_SCOPE (lease scope, default
`scheduler`), WDL_SCHEDULER_TTL_MS, WDL_SCHEDULER_TICK_MS,
WDL_SCHEDULER_CATCHUP_MS, WDL_SCHEDULER_CLOCK
(`real_ms:virtual_ms:factor`, tests only), WDL_GATEWAY_URL and
WDL_INTERNAL_TOKEN (where and how to dispatch; scrapers of WDL_METRICS_PORT send it
as `Authorization: Bearer`), WDL_METRICS_PORT.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket

from prometheus_client import make_asgi_app

from eventlog.factory import open_event_log
from projections.reader import ProjectionReader
from projections.redis_store import RedisProjectionStore
from services.internal import InternalTokenGuard
from services.leases import LeaseClient
from services.logs import configure as configure_logging
from services.scheduler.clock import AcceleratedClock, Clock, SystemClock
from services.scheduler.dispatch import GatewayDispatcher
from services.scheduler.scheduler import Scheduler, SchedulerMetrics, namespace_shares
from services.serving import HttpServer
from services.settings import Settings


async def main() -> None:
    settings = Settings.from_env()
    if settings.redis_url is None:
        raise SystemExit("the standalone scheduler reads the Redis projection: set REDIS_URL "
                         "(embedded mode runs the scheduler inside `wdl dev`)")
    spec = os.environ.get("WDL_SCHEDULER_CLOCK")
    clock: Clock = AcceleratedClock.parse(spec) if spec else SystemClock()
    holder = os.environ.get("WDL_SCHEDULER_ID") or f"{socket.gethostname()}-{os.getpid()}"
    metrics = SchedulerMetrics()
    token = os.environ.get("WDL_INTERNAL_TOKEN", "")
    server = None
    if os.environ.get("WDL_METRICS_PORT"):
        if not token:
            raise SystemExit("WDL_METRICS_PORT needs WDL_INTERNAL_TOKEN: scrapers authenticate "
                             "with it (docs/metrics.md)")
        server = HttpServer(InternalTokenGuard(make_asgi_app(metrics.registry), token),
                            port=int(os.environ["WDL_METRICS_PORT"]), name="scheduler-metrics")
        await server.start()
    try:
        await _run(settings, clock, holder, metrics, token)
    finally:
        if server is not None:
            await server.stop()


async def _run(settings: Settings, clock: Clock, holder: str, metrics: SchedulerMetrics,
               token: str) -> None:
    assert settings.redis_url is not None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    dispatcher = GatewayDispatcher(os.environ.get("WDL_GATEWAY_URL", "http://127.0.0.1:8080"),
                                   token)
    async with open_event_log(settings.event_log_url) as log, RedisProjectionStore(
            settings.redis_url, prefix=settings.redis_prefix) as store:
        await dispatcher.start()
        try:
            reader = ProjectionReader(store)
            shares = namespace_shares(reader)
            scheduler = Scheduler(
                leases=LeaseClient(log, reader, clock, actor=f"scheduler:{holder}"),
                reader=reader, dispatcher=dispatcher, clock=clock, holder=holder,
                cron_runs=shares.of("cron_runs"), refresh_share=shares.refresh,
                scope=os.environ.get("WDL_SCHEDULER_SCOPE", "scheduler"),
                ttl_ms=int(os.environ.get("WDL_SCHEDULER_TTL_MS", "10000")),
                tick_ms=int(os.environ.get("WDL_SCHEDULER_TICK_MS", "500")),
                catchup_ms=int(os.environ.get("WDL_SCHEDULER_CATCHUP_MS", "60000")),
                metrics=metrics)
            await scheduler.run(stop)
        finally:
            await dispatcher.stop()


if __name__ == "__main__":
    configure_logging()
    asyncio.run(main())
