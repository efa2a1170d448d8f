"""`python -m services.workflows`: one engine replica from the environment.

WDL_WORKFLOWS_ID (default host-pid), WDL_WORKFLOWS_PORT (HTTP API and /healthz,
default 8798), WDL_WORKFLOWS_TTL_MS (lease), WDL_WORKFLOW_LOG (`kafka://…` or
`sqlite:///…`; default: topic `<control topic>.workflows` on the control log's cluster),
WDL_GATEWAY_URL and WDL_INTERNAL_TOKEN (where and how to run invocations).
`wdl up --only workflows` runs the same engine inside the platform process.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Mapping

from eventlog.factory import open_event_log
from projections.reader import ProjectionReader
from projections.redis_store import RedisProjectionStore
from services.leases import LeaseClient
from services.logs import configure as configure_logging
from services.replica import run_until_stopped, sibling_log_url, stop_on_signals
from services.scheduler.clock import SystemClock
from services.settings import Settings
from services.workflows.invoke import GatewayInvoker
from services.workflows.service import WorkflowsService
from services.workflows.store import open_workflow_store


def workflow_log_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """WDL_WORKFLOW_LOG, else beside the control log: on Kafka the topic
    `<control topic>.workflows` of the same cluster, embedded a SQLite file."""
    return sibling_log_url(settings, env, variable="WDL_WORKFLOW_LOG", suffix="workflows",
                           group=False)


async def main() -> None:
    settings = Settings.from_env()
    if settings.redis_url is None:
        raise SystemExit("the standalone workflows engine takes its lease through the Redis "
                         "projection: set REDIS_URL (`wdl dev` runs the engine embedded)")
    holder = os.environ.get("WDL_WORKFLOWS_ID") or f"{socket.gethostname()}-{os.getpid()}"
    stop = stop_on_signals()
    invoker = GatewayInvoker(os.environ.get("WDL_GATEWAY_URL", "http://127.0.0.1:8080"),
                             os.environ.get("WDL_INTERNAL_TOKEN", ""))
    async with open_event_log(settings.event_log_url) as log, RedisProjectionStore(
            settings.redis_url, prefix=settings.redis_prefix) as store:
        reader = ProjectionReader(store)
        clock = SystemClock()
        service = WorkflowsService(
            store=open_workflow_store(workflow_log_url(settings)), invoker=invoker,
            leases=LeaseClient(log, reader, clock, actor=f"workflows:{holder}"),
            holder=holder, internal_token=os.environ.get("WDL_INTERNAL_TOKEN", ""),
            port=int(os.environ.get("WDL_WORKFLOWS_PORT", "8798")),
            ttl_ms=int(os.environ.get("WDL_WORKFLOWS_TTL_MS", "10000")))
        await run_until_stopped(service, invoker, stop)


if __name__ == "__main__":
    configure_logging()
    asyncio.run(main())
