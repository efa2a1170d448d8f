"""Say what a shutdown is waiting for when it takes too long.

A stop that hangs leaves nothing behind but an idle event loop: the thread dump a
timeout prints shows no coroutine. `report_stalls` logs, every `every` seconds while
its body runs, the stack of each pending asyncio task - the stop's own task shows
which component it is awaiting, the others what that component waits on."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections.abc import AsyncIterator

log = logging.getLogger("wdl.stalls")


def task_stacks(limit: int = 12) -> str:
    """The stacks of the running loop's pending tasks, as text."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        if task.done():
            continue
        out.write(f"--- task {task.get_name()}\n")
        task.print_stack(limit=limit, file=out)
    return out.getvalue()


@contextlib.asynccontextmanager
async def report_stalls(what: str, every: float = 20.0) -> AsyncIterator[None]:
    async def watch() -> None:
        waited = 0.0
        while True:
            await asyncio.sleep(every)
            waited += every
            log.warning("%s still running after %.0f s; pending tasks:\n%s", what, waited,
                        task_stacks())

    watcher = asyncio.create_task(watch(), name=f"stall-report:{what}")
    try:
        yield
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
