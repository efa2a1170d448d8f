"""Running one batch: the gateway's `/__wdl/queue` runs the consumer worker's active version.

Like `/__wdl/scheduled`, reachable only with the platform's internal token. The
gateway answers 200 with workerd's queue outcome (`Fetcher.queue`), or an
error when it could not run the batch at all (no active version, quarantined,
unreachable): then None, and the consumer tries again without counting it.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.replica import GatewayClient


class GatewayQueueInvoker(GatewayClient):
    def __init__(self, gateway_url: str, internal_token: str, *,
                 timeout_s: float = 60.0) -> None:
        super().__init__(gateway_url, internal_token, timeout_s=timeout_s)

    async def invoke(self, namespace: str, worker: str, queue: str,
                     messages: list[dict[str, Any]]) -> dict[str, Any] | None:
        body = {"namespace": namespace, "worker": worker, "queue": queue, "messages": messages}
        try:
            response = await self.post("/__wdl/queue", body)
            answer = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        if response.status_code == 200 and isinstance(answer, dict) and "outcome" in answer:
            return answer
        return None
