"""Before the control API acknowledges a command, gateways holding a freshness lease
must have dropped what it changed (services/state/leases.py).

In one process the state service's `GatewayLeases.propagate` is called directly;
an API process of its own calls the state service's `POST /propagate`. If that
fails, waiting out the longest lease a gateway can hold is just as safe.
"""

from __future__ import annotations

import asyncio
import logging

import httpx

log = logging.getLogger("wdl.api.propagate")


class RemotePropagator:
    def __init__(self, state_url: str, internal_token: str, *, max_lease_ms: int) -> None:
        self.url = state_url.rstrip("/") + "/propagate"
        self.internal_token = internal_token
        self.max_lease_s = max_lease_ms / 1000
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.max_lease_s + 2, trust_env=False)

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def __call__(self) -> None:
        try:
            assert self._client is not None, "RemotePropagator is not started"
            response = await self._client.post(
                self.url, headers={"x-wdl-internal-token": self.internal_token})
            if response.status_code == 200:
                return
            log.warning("state service refused to propagate: %s", response.status_code)
        except httpx.HTTPError as exc:
            log.warning("state service did not propagate: %s", exc)
        await asyncio.sleep(self.max_lease_s)
