"""Workflows for operators and tenants: the engine's instances, read and controlled.

The instances live in the workflows engine (services/workflows), not in the
projection: these routes proxy its internal API over loopback with the
platform's internal token, after the namespace access check here (`observer`
reads, `developer` and up controls). Where the engine is: set by the
platform process that runs it (`app.state.workflows`), else
WDL_WORKFLOWS_URL + WDL_INTERNAL_TOKEN (`wdl up --only api`).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from services.api.auth import Auth
from services.api.errors import ApiError
from services.api.routes.common import READ_ERRORS, WRITE_ERRORS, Ctx, Namespace, namespace_doc

router = APIRouter(tags=["workflows"])
Workflow = Annotated[str, Path(max_length=64, description="workflow name")]
InstanceId = Annotated[str, Path(max_length=100, description="instance id")]


class EventIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: str = Field(min_length=1, max_length=100)
    payload: Any = None


def _engine(request: Request) -> tuple[str, str]:
    configured = getattr(request.app.state, "workflows", None)
    if configured is not None:
        url, token = configured
        return str(url), str(token)
    url, token = os.environ.get("WDL_WORKFLOWS_URL"), os.environ.get("WDL_INTERNAL_TOKEN")
    if not url or not token:
        raise ApiError(503, "workflows_unavailable",
                       "this control API does not know the workflows engine "
                       "(set WDL_WORKFLOWS_URL and WDL_INTERNAL_TOKEN)")
    return url, token


async def _call(request: Request, method: str, path: str, *, params: dict[str, str] | None = None,
                body: dict[str, Any] | None = None) -> Any:
    url, token = _engine(request)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            r = await client.request(method, url.rstrip("/") + path, params=params, json=body,
                                     headers={"x-wdl-internal-token": token})
    except httpx.HTTPError as exc:
        raise ApiError(503, "workflows_unavailable",
                       f"the workflows engine is unreachable: {exc}") from None
    doc = r.json()
    if r.status_code >= 400:
        code = doc.get("error", "workflows_error")
        if code == "instance.not_found":
            raise ApiError(404, "instance_not_found", "no such workflow instance")
        raise ApiError(r.status_code, str(code).replace(".", "_"),
                       str(doc.get("message", code)))
    return doc


@router.get("/v1/namespaces/{ns}/workflows", responses=READ_ERRORS)
async def list_workflows(ns: Namespace, ctx: Ctx, principal: Auth,
                         request: Request) -> list[dict[str, Any]]:
    """Workflows of the namespace that have instances, with counts by status."""
    await namespace_doc(ctx, principal, ns)
    doc = await _call(request, "GET", "/v1/workflows", params={"namespace": ns})
    rows: list[dict[str, Any]] = doc["workflows"]
    return rows


@router.get("/v1/namespaces/{ns}/workflows/{workflow}/instances", responses=READ_ERRORS)
async def list_instances(ns: Namespace, workflow: Workflow, ctx: Ctx, principal: Auth,
                         request: Request, response: Response, status: str | None = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 1000,
                         cursor: Annotated[str, Query(max_length=200)] = "",
                         ) -> list[dict[str, Any]]:
    """Instances oldest first, without params or output (`.../instances/{id}` has them),
    at most `limit`; when there are more, the `x-wdl-next-cursor` header is the `cursor`
    of the next page."""
    await namespace_doc(ctx, principal, ns)
    params = {"namespace": ns, "workflow": workflow, "limit": str(limit), "cursor": cursor}
    if status is not None:
        params["status"] = status
    doc = await _call(request, "GET", "/v1/instances", params=params)
    rows: list[dict[str, Any]] = doc["instances"]
    if doc.get("cursor"):
        response.headers["x-wdl-next-cursor"] = str(doc["cursor"])
    return rows


@router.get("/v1/namespaces/{ns}/workflows/{workflow}/instances/{instance}",
            responses=READ_ERRORS)
async def instance_status(ns: Namespace, workflow: Workflow, instance: InstanceId, ctx: Ctx,
                          principal: Auth, request: Request) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns)
    doc: dict[str, Any] = await _call(request, "GET", "/v1/instance", params={
        "namespace": ns, "workflow": workflow, "id": instance})
    return doc


@router.post("/v1/namespaces/{ns}/workflows/{workflow}/instances/{instance}/events",
             responses=WRITE_ERRORS)
async def send_event(ns: Namespace, workflow: Workflow, instance: InstanceId, body: EventIn,
                     ctx: Ctx, principal: Auth, request: Request) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    await _call(request, "POST", "/rpc", body={"op": "sendEvent", "namespace": ns,
                                               "workflow": workflow, "id": instance,
                                               "type": body.type, "payload": body.payload})
    return {"ok": True, "instance": instance, "type": body.type}


# After /events: `{op}` would match it first.
@router.post("/v1/namespaces/{ns}/workflows/{workflow}/instances/{instance}/{op}",
             responses=WRITE_ERRORS)
async def control(ns: Namespace, workflow: Workflow, instance: InstanceId,
                  op: Literal["pause", "resume", "terminate", "restart"], ctx: Ctx,
                  principal: Auth, request: Request) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    await _call(request, "POST", "/rpc", body={"op": op, "namespace": ns,
                                               "workflow": workflow, "id": instance})
    return {"ok": True, "op": op, "instance": instance}
