"""`python -m projections`: run one live projector replica from the environment."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from eventlog.kafka import KafkaEventLog
from projections.membership import KafkaGroupMembership
from projections.projector import Projector
from projections.runtime import open_backends
from services.settings import Settings


async def main() -> None:
    settings = Settings.from_env()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with open_backends(settings) as b:
        membership = None
        # An empty group name means this replica owns every partition by itself.
        group = os.environ.get("WDL_PROJECTOR_GROUP", "wdl-projector")
        if isinstance(b.log, KafkaEventLog) and group:
            membership = KafkaGroupMembership(b.log.settings.bootstrap_servers, b.log.topic,
                                              f"{group}.{b.log.topic}")
        await Projector(b.log, b.store, b.audit).run(
            stop, membership=membership.__aiter__() if membership else None)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
