"""`python -m services.queues`: one queue service replica from the environment.

WDL_QUEUES_PORT (producer endpoint, /healthz, /metrics; default 8797), WDL_QUEUE_LOG
(`kafka://…` or `sqlite:///…`; default: topic `<control topic>.queues` on the control
log's cluster), WDL_GATEWAY_URL and WDL_INTERNAL_TOKEN (where and how to run batches),
REDIS_URL (the projection: queues and their consumers); the bounds WDL_QUEUE_*
(services/queues/bounds.py, docs/queues.md "Bounds"). `wdl up --only queues` runs the
same inside the platform process.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping

from projections.reader import ProjectionReader
from projections.redis_store import RedisProjectionStore
from services.logs import configure as configure_logging
from services.queues.bounds import QueueBounds
from services.queues.invoke import GatewayQueueInvoker
from services.queues.service import QueuesService
from services.queues.store import open_queue_log
from services.replica import run_until_stopped, sibling_log_url, stop_on_signals
from services.settings import Settings


def queue_log_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """WDL_QUEUE_LOG, else beside the control log: on Kafka the topic (and consumer
    group) `<control topic>.queues` of the same cluster, embedded a SQLite file."""
    return sibling_log_url(settings, env, variable="WDL_QUEUE_LOG", suffix="queues", group=True)


async def main() -> None:
    settings = Settings.from_env()
    if settings.redis_url is None:
        raise SystemExit("the standalone queue service reads queues from the Redis projection: "
                         "set REDIS_URL (`wdl dev` runs it embedded)")
    stop = stop_on_signals()
    token = os.environ.get("WDL_INTERNAL_TOKEN", "")
    bounds = QueueBounds.from_env()
    invoker = GatewayQueueInvoker(os.environ.get("WDL_GATEWAY_URL", "http://127.0.0.1:8080"),
                                  token, timeout_s=bounds.invoke_timeout_s,
                                  connections=bounds.capacity)
    async with RedisProjectionStore(settings.redis_url, prefix=settings.redis_prefix) as store:
        service = QueuesService(log=open_queue_log(queue_log_url(settings)),
                                reader=ProjectionReader(store), invoker=invoker,
                                internal_token=token, bounds=bounds,
                                port=int(os.environ.get("WDL_QUEUES_PORT", "8797")))
        await run_until_stopped(service, invoker, stop)


if __name__ == "__main__":
    configure_logging()
    asyncio.run(main())
