"""Running one batch: the gateway's `/__wdl/queue` runs the consumer worker's active version.

Like `/__wdl/scheduled`, reachable only with the platform's internal token. What comes
back is one of three things (docs/queues.md "Failures"):

* `ran`: the gateway answered 200 with workerd's queue outcome (`Fetcher.queue`);
* `failed`: the tenant's batch failed — the request reached the gateway and then timed
  out, the connection broke while the batch ran, or the gateway answered an error about
  running it (`queue_invoke_failed`, a 5xx other than "not run", an unreadable answer).
  Counts an attempt, like a thrown `queue()`: max_retries, then the dead-letter queue;
* `not_run`: the platform could not run it — the gateway was unreachable (no connection),
  or answered 503 before running anything (no active version, a held namespace, the
  platform's own lookup failing). Tried again later with backoff, no attempt counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from services.replica import GatewayClient

# The gateway's one answer meaning "the tenant's code ran and failed" among its 503s;
# every other 503 with a code means nothing of the tenant's ran (gateway.js queueBatch).
INVOKE_FAILED = "queue_invoke_failed"


@dataclass(frozen=True)
class Invocation:
    kind: str  # "ran" | "failed" | "not_run"
    answer: dict[str, Any] | None = None
    reason: str = ""

    @classmethod
    def ran(cls, answer: dict[str, Any]) -> Invocation:
        return cls("ran", answer)

    @classmethod
    def failed(cls, reason: str) -> Invocation:
        return cls("failed", None, reason)

    @classmethod
    def not_run(cls, reason: str) -> Invocation:
        return cls("not_run", None, reason)


def classify(status: int, answer: Any) -> Invocation:
    """The gateway's HTTP answer to one batch as an Invocation."""
    if status == 200 and isinstance(answer, dict) and "outcome" in answer:
        return Invocation.ran(answer)
    code = answer.get("error") if isinstance(answer, dict) else None
    if status == 503 and isinstance(code, str) and code != INVOKE_FAILED:
        return Invocation.not_run(code[:64])
    if status in (401, 403):
        return Invocation.not_run("gateway_refused")  # the platform's token, not the tenant
    return Invocation.failed("gateway_error")  # a label: not the tenant's words


class GatewayQueueInvoker(GatewayClient):
    def __init__(self, gateway_url: str, internal_token: str, *, timeout_s: float = 60.0,
                 connections: int = 256) -> None:
        super().__init__(gateway_url, internal_token, timeout_s=timeout_s,
                         connections=connections)

    async def invoke(self, namespace: str, worker: str, queue: str,
                     messages: list[dict[str, Any]]) -> Invocation:
        body = {"namespace": namespace, "worker": worker, "queue": queue, "messages": messages}
        try:
            response = await self.post("/__wdl/queue", body)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            return Invocation.not_run(type(exc).__name__)  # never reached the gateway
        except httpx.TimeoutException:
            return Invocation.failed("timeout")
        except httpx.HTTPError as exc:  # the connection broke while the batch ran
            return Invocation.failed(type(exc).__name__)
        try:
            answer = response.json()
        except (ValueError, RecursionError):
            answer = None
        return classify(response.status_code, answer)
