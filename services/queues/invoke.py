"""Running one batch: the gateway's `/__wdl/queue` runs the consumer worker's active version.

Like `/__wdl/scheduled`, reachable only with the platform's internal token. The
gateway answers 200 with workerd's queue outcome (`Fetcher.queue`), or an
error when it could not run the batch at all (no active version, quarantined,
unreachable): then None, and the consumer tries again without counting it.
"""

from __future__ import annotations

from typing import Any

import httpx

INTERNAL_HEADER = "x-wdl-internal-token"


class GatewayQueueInvoker:
    def __init__(self, gateway_url: str, internal_token: str, *,
                 timeout_s: float = 60.0) -> None:
        self.gateway_url = gateway_url.rstrip("/")
        self.internal_token = internal_token
        self.timeout_s = timeout_s
        self._client: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._client = httpx.AsyncClient(timeout=self.timeout_s,
                                         limits=httpx.Limits(max_connections=256))

    async def stop(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def invoke(self, namespace: str, worker: str, queue: str,
                     messages: list[dict[str, Any]]) -> dict[str, Any] | None:
        if self._client is None:
            raise RuntimeError("GatewayQueueInvoker is not started")
        body = {"namespace": namespace, "worker": worker, "queue": queue, "messages": messages}
        try:
            response = await self._client.post(f"{self.gateway_url}/__wdl/queue", json=body,
                                               headers={INTERNAL_HEADER: self.internal_token})
            answer = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if response.status_code == 200 and isinstance(answer, dict) and "outcome" in answer:
            return answer
        return None
