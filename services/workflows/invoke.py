"""Running one invocation: the gateway's `/__wdl/workflow` runs the instance's pinned version.

Like the scheduler's `/__wdl/scheduled`, the endpoint is reachable only with
the platform's internal token; the gateway loads `<ns>:<worker>:<version>`
through the loader and calls the tenant's class with the history
(workerd/tenant/workflows.js). The answer is the invocation's report.

The answer is tenant data: it is read up to a bound (a report carries at most
one step result, 1 MiB, and an error) and scanned for its depth before it is
parsed (services/workflows/bounds.py), so no answer can exhaust memory or the
parser's recursion. Every way it can fail is an `InvokeError` the engine counts
against the instance; only "could not start" (`Unavailable`) is not counted.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.replica import INTERNAL_HEADER, GatewayClient
from services.workflows import bounds
from services.workflows.engine import InvokeError, Limits, Unavailable
from services.workflows.model import Instance

# What an answer may hold beyond one step result: the report's envelope and its error.
ANSWER_SLACK = 256 * 1024


class GatewayInvoker(GatewayClient):
    def __init__(self, gateway_url: str, internal_token: str, *, timeout_s: float = 660.0,
                 max_answer_bytes: int = Limits().max_result_bytes + ANSWER_SLACK) -> None:
        super().__init__(gateway_url, internal_token, timeout_s=timeout_s)
        self.max_answer_bytes = max_answer_bytes

    async def invoke(self, inst: Instance) -> dict[str, Any]:
        body = {"namespace": inst.namespace, "worker": inst.worker, "version_id": inst.version,
                "class_name": inst.class_name, "workflow": inst.workflow,
                "instance_id": inst.id, "params": inst.params, "created_at": inst.created_at,
                "history": inst.history()}
        if self._client is None:
            raise Unavailable("the gateway client is not started")
        try:
            async with self._client.stream(
                    "POST", f"{self.gateway_url}/__wdl/workflow", json=body,
                    headers={INTERNAL_HEADER: self.internal_token}) as response:
                raw = await self._read(response)
                status = response.status_code
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
            raise Unavailable(f"gateway unreachable: {type(exc).__name__}") from None
        except httpx.HTTPError as exc:
            # Cut off mid-invocation (the gateway hung, was restarted, or killed for a spin).
            raise InvokeError(f"the gateway did not answer the invocation: "
                              f"{type(exc).__name__}") from None
        try:
            answer = bounds.loads(raw, bounds.MAX_DEPTH + bounds.ENVELOPE_DEPTH)
        except bounds.TooDeep:
            raise InvokeError(f"the step's result is nested deeper than {bounds.MAX_DEPTH} "
                              "levels") from None
        except (ValueError, RecursionError):
            answer = None
        if not isinstance(answer, dict):
            raise InvokeError(f"the gateway's answer ({status}) is not a JSON object")
        if status == 200 and isinstance(answer.get("report"), dict):
            report: dict[str, Any] = answer["report"]
            return report
        detail = bounds.clip(str(answer.get("error") or answer.get("message") or ""), 500)
        if status == 503 and answer.get("outcome") == "held":
            raise Unavailable(f"the namespace is held: {detail}")  # until it is lifted
        raise InvokeError(f"gateway answered {status}: {detail}")

    async def _read(self, response: httpx.Response) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.aiter_bytes():
            size += len(chunk)
            if size > self.max_answer_bytes:
                raise InvokeError(f"the invocation's answer is larger than "
                                  f"{self.max_answer_bytes} bytes (a step result is at most "
                                  f"{Limits().max_result_bytes})")
            chunks.append(chunk)
        return b"".join(chunks)
