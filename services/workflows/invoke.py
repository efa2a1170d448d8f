"""Running one invocation: the gateway's `/__wdl/workflow` runs the instance's pinned version.

Like the scheduler's `/__wdl/scheduled`, the endpoint is reachable only with
the platform's internal token; the gateway loads `<ns>:<worker>:<version>`
through the loader and calls the tenant's class with the history
(workerd/tenant/workflows.js). The answer is the invocation's report.
"""

from __future__ import annotations

from typing import Any

import httpx

from services.replica import GatewayClient
from services.workflows.engine import InvokeError
from services.workflows.model import Instance


class GatewayInvoker(GatewayClient):
    def __init__(self, gateway_url: str, internal_token: str, *, timeout_s: float = 660.0) -> None:
        super().__init__(gateway_url, internal_token, timeout_s=timeout_s)

    async def invoke(self, inst: Instance) -> dict[str, Any]:
        body = {"namespace": inst.namespace, "worker": inst.worker, "version_id": inst.version,
                "class_name": inst.class_name, "workflow": inst.workflow,
                "instance_id": inst.id, "params": inst.params, "created_at": inst.created_at,
                "history": inst.history()}
        try:
            response = await self.post("/__wdl/workflow", body)
        except httpx.HTTPError as exc:
            raise InvokeError(f"gateway unreachable: {exc}") from None
        try:
            answer = response.json()
        except ValueError:
            answer = {}
        if response.status_code == 200 and isinstance(answer.get("report"), dict):
            report: dict[str, Any] = answer["report"]
            return report
        raise InvokeError(f"gateway answered {response.status_code}: "
                          f"{str(answer.get('error') or answer.get('message') or '')[:500]}")
