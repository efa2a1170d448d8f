"""`python -m services.queues`: one queue service replica from the environment.

WDL_QUEUES_PORT (producer endpoint, /healthz, /metrics; default 8797), WDL_QUEUE_LOG
(`kafka://…` or `sqlite:///…`; default: topic `<control topic>.queues` on the control
log's cluster), WDL_GATEWAY_URL and WDL_INTERNAL_TOKEN (where and how to run batches),
REDIS_URL (the projection: queues and their consumers). `wdl up --only queues` runs the
same inside the platform process.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping
from urllib.parse import parse_qs, urlsplit

from projections.reader import ProjectionReader
from projections.redis_store import RedisProjectionStore
from services.logs import configure as configure_logging
from services.queues.invoke import GatewayQueueInvoker
from services.queues.service import QueuesService
from services.queues.store import open_queue_log
from services.settings import Settings


def queue_log_url(settings: Settings, env: Mapping[str, str] | None = None) -> str:
    """WDL_QUEUE_LOG, else beside the control log: on Kafka the topic `<control
    topic>.queues` of the same cluster, embedded a SQLite file."""
    e = os.environ if env is None else env
    if e.get("WDL_QUEUE_LOG"):
        return e["WDL_QUEUE_LOG"]
    control = urlsplit(settings.event_log_url)
    if control.scheme == "kafka":
        topic = parse_qs(control.query).get("topic", ["wdl.events"])[0]
        return f"kafka://{control.netloc}?topic={topic}.queues&group={topic}.queues"
    return f"sqlite://{settings.data_dir / 'queues.sqlite'}"


async def main() -> None:
    settings = Settings.from_env()
    if settings.redis_url is None:
        raise SystemExit("the standalone queue service reads queues from the Redis projection: "
                         "set REDIS_URL (`wdl dev` runs it embedded)")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    token = os.environ.get("WDL_INTERNAL_TOKEN", "")
    invoker = GatewayQueueInvoker(os.environ.get("WDL_GATEWAY_URL", "http://127.0.0.1:8080"),
                                  token)
    async with RedisProjectionStore(settings.redis_url, prefix=settings.redis_prefix) as store:
        service = QueuesService(log=open_queue_log(queue_log_url(settings)),
                                reader=ProjectionReader(store), invoker=invoker,
                                internal_token=token,
                                port=int(os.environ.get("WDL_QUEUES_PORT", "8797")))
        await invoker.start()
        await service.start()
        try:
            done = asyncio.ensure_future(service.wait())
            stopping = asyncio.ensure_future(stop.wait())
            await asyncio.wait({done, stopping}, return_when=asyncio.FIRST_COMPLETED)
            for task in (done, stopping):
                task.cancel()
        finally:
            await service.stop()
            await invoker.stop()


if __name__ == "__main__":
    configure_logging()
    asyncio.run(main())
