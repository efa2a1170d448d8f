"""`python -m projections`: run one live projector replica from the environment."""

from __future__ import annotations

import asyncio
import logging
import signal

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
        await Projector(b.log, b.store, b.audit).run(stop)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main())
