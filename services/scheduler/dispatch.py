"""Dispatching a slot to the data plane: the gateway runs the version's `scheduled()`."""

from __future__ import annotations

from typing import Any

import httpx

INTERNAL_HEADER = "x-wdl-internal-token"
# Connections to the gateway: the scheduler's fair share hands out exactly this many
# run slots (services/scheduler/scheduler.py), so no run ever queues inside httpx's
# pool, where every namespace's runs were served first come, first served.
POOL_SIZE = 64


class GatewayDispatcher:
    """POSTs the slot to the gateway's internal endpoint, which loads the exact version.

    The endpoint is reachable only with the platform's internal token, so a
    tenant cannot trigger another tenant's cron through the public gateway.
    """

    def __init__(self, gateway_url: str, internal_token: str, *,
                 timeout_s: float = 30.0, pool_size: int = POOL_SIZE) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.internal_token = internal_token
        self.timeout_s = timeout_s
        self.pool_size = pool_size
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=self.timeout_s,
            limits=httpx.Limits(max_connections=self.pool_size,
                                max_keepalive_connections=self.pool_size))

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def dispatch(self, namespace: str, worker: str, version_id: str, cron: str,
                       slot_ms: int) -> tuple[str, str]:
        if self._client is None:
            raise RuntimeError("GatewayDispatcher is not started")
        body: dict[str, Any] = {"namespace": namespace, "worker": worker,
                                "version_id": version_id, "cron": cron,
                                "scheduled_time": slot_ms}
        response = await self._client.post(f"{self.gateway_url}/__wdl/scheduled", json=body,
                                           headers={INTERNAL_HEADER: self.internal_token})
        try:
            result = response.json()
        except ValueError:
            result = {}
        if response.status_code == 200 and result.get("outcome") == "ok":
            return "ok", ""
        error = str(result.get("error") or f"gateway answered {response.status_code}")
        return "error", error[:2000]
