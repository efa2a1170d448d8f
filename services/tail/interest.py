"""Telling the state service which workers are tailed (services/state/tails.py).

The data service holds the live tail subscriptions; gateways load a version
with a tail consumer only while one exists for its worker. So every change of
the set of tailed (namespace, worker) is reported to the state service - the
full set, with this data service's `source` id - and again every `period_s`,
so a restarted state service learns it again (and a data service that went
away is forgotten there after a while). A new subscription waits for its
report (`ensure()`) before its stream says `connected`: every request that
arrives later is traced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable

from services.tail.hub import TailHub

log = logging.getLogger("wdl.tail.interest")
Pairs = list[tuple[str, str]]
Sink = Callable[[str, Pairs], Awaitable[object]]


class TailInterest:
    def __init__(self, hub: TailHub, *, period_s: float = 5.0,
                 timeout_s: float = 5.0) -> None:
        self.hub = hub
        self.period_s = period_s
        self.timeout_s = timeout_s
        self.source = secrets.token_hex(8)
        self.sink: Sink | None = None  # None: nothing to tell (no state service known)
        self.reports = 0
        self.failures = 0
        self._lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    async def ensure(self) -> None:
        """Return once the state service has the set as of (at least) this call."""
        if self.sink is None:
            return
        async with self._lock:  # one report at a time: a later one carries a newer set
            pairs = self.hub.tailed()
            try:
                async with asyncio.timeout(self.timeout_s):
                    await self.sink(self.source, pairs)
            except BaseException:
                self.failures += 1
                raise
            self.reports += 1

    def changed(self) -> None:
        """A subscription ended: report it without making anyone wait."""
        if self.sink is None:
            return
        task = asyncio.get_running_loop().create_task(self._quietly())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _quietly(self) -> None:
        try:
            await self.ensure()
        except Exception as exc:
            log.warning("could not tell the state service the tailed workers: %s", exc)

    def start(self) -> None:
        self._loop = asyncio.get_running_loop().create_task(self._periodic())

    async def _periodic(self) -> None:
        while True:
            await asyncio.sleep(self.period_s)
            await self._quietly()

    async def stop(self) -> None:
        for task in [*self._tasks, *([self._loop] if self._loop else [])]:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._loop = None


def http_sink(client: object, state_url: str, internal_token: str) -> Sink:
    """Reports over HTTP (`POST {state_url}/tails`) - a data service in its own process."""
    import httpx

    assert isinstance(client, httpx.AsyncClient)

    async def post(source: str, pairs: Pairs) -> None:
        response = await client.post(
            state_url.rstrip("/") + "/tails",
            json={"source": source, "tailed": [list(p) for p in pairs]},
            headers={"x-wdl-internal-token": internal_token})
        response.raise_for_status()

    return post
