"""Queues: control state (create, list, delete, consumer set/remove) as events.

A queue and its consumer are events of the queue's aggregate on the namespace's
partition (eventlog/events/queues.py). Lookups here refuse what is plainly
wrong with a 404 before anything is written; the fold decides races.
Messages are not here: they live on the queues' message log (services/queues); the
dead-letter routes ask the queue service (`app.state.queues`, set by the platform
process that runs it, else WDL_QUEUES_URL + WDL_INTERNAL_TOKEN) for the messages it holds.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from eventlog.events import QueueConsumerRemoved, QueueConsumerSet, QueueCreated, QueueDeleted
from eventlog.events.queues import (
    MAX_BATCH_SIZE,
    MAX_BATCH_TIMEOUT_S,
    MAX_CONCURRENCY,
    MAX_RETRIES,
)
from eventlog.validation import MAX_DELAY_S
from services.api.auth import Auth, Principal
from services.api.commands import build, idempotency_key, submit
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.models import NAME_PATTERN, CommandResult
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    bound_by_active,
    namespace_doc,
    worker_doc,
)

router = APIRouter(prefix="/v1/namespaces/{ns}/queues", tags=["queues"])
QueueName = Annotated[str, Path(min_length=1, max_length=63, description="queue name")]
Force = Annotated[bool, Query(description="delete even if an active version binds it or a "
                                          "consumer names it as its dead-letter queue")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class QueueCreate(_Strict):
    name: str = Field(min_length=1, max_length=63)
    delivery_delay: int = Field(0, ge=0, le=MAX_DELAY_S,
                                description="seconds each message waits before delivery")


class ConsumerIn(_Strict):
    worker: str = Field(pattern=NAME_PATTERN, description="the worker whose queue() handler "
                        "consumes the queue (of this namespace)")
    max_batch_size: int = Field(10, ge=1, le=MAX_BATCH_SIZE)
    max_batch_timeout: int = Field(5, ge=0, le=MAX_BATCH_TIMEOUT_S,
                                   description="seconds to wait for a full batch")
    max_retries: int = Field(3, ge=0, le=MAX_RETRIES)
    retry_delay: int = Field(0, ge=0, le=MAX_DELAY_S)
    dead_letter_queue: str = Field("", max_length=63)
    max_concurrency: int = Field(0, ge=0, le=MAX_CONCURRENCY,
                                 description="batches in flight at once; 0: automatic")


def _view(name: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, **doc}


async def _queue(ctx: ApiContext, ns: str, name: str) -> dict[str, Any]:
    doc = await ctx.reader.resource("queue", ns, name)
    if doc is None:
        raise ApiError(404, "queue_not_found", f"queue {name!r} does not exist in namespace {ns}")
    return doc


async def _accepted(ctx: ApiContext, principal: Principal, event: Any, idem: str | None,
                    name: str) -> dict[str, Any]:
    env = build(ctx, principal, event, idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted(name=name).as_dict()


@router.get("", responses=READ_ERRORS, summary="Queues of this namespace")
async def list_queues(ns: Namespace, ctx: Ctx, principal: Auth) -> list[dict[str, Any]]:
    await namespace_doc(ctx, principal, ns)
    docs = await ctx.reader.resources("queue", ns)
    return [_view(name, doc) for name, doc in sorted(docs.items())]


@router.post("", status_code=201, response_model=CommandResult, responses=WRITE_ERRORS,
             summary="Create a queue (409 `resource_exists` if it exists)")
async def create_queue(ns: Namespace, body: QueueCreate, ctx: Ctx, principal: Auth,
                       idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    async with ctx.quota_locks.hold("queues", ns):  # counted and written in turn
        ctx.quotas.check("queues", len(await ctx.reader.resources("queue", ns)),
                         f"namespace {ns}", way_out="delete a queue first")
        return await _accepted(ctx, principal, QueueCreated(
            namespace=ns, name=body.name, delivery_delay=body.delivery_delay), idem, body.name)


@router.get("/{name}", responses=READ_ERRORS, summary="A queue and its consumer")
async def get_queue(ns: Namespace, name: QueueName, ctx: Ctx,
                    principal: Auth) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns)
    return _view(name, await _queue(ctx, ns, name))


@router.delete("/{name}", response_model=CommandResult, responses=WRITE_ERRORS,
               summary="Delete a queue, its consumer and its messages (409 `resource_in_use` "
               "while an active version binds it, unless forced)")
async def delete_queue(ns: Namespace, name: QueueName, ctx: Ctx, principal: Auth,
                       force: Force = False, idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    await _queue(ctx, ns, name)
    if not force:
        users = await bound_by_active(ctx, ns, "queue", name)
        if users:
            raise ApiError(409, "resource_in_use",
                           f"queue {name!r} is bound by the active version of "
                           f"{', '.join(users)}; promote versions without it first, or "
                           "delete with force")
    return await _accepted(ctx, principal, QueueDeleted(namespace=ns, name=name, force=force),
                           idem, name)


@router.put("/{name}/consumer", response_model=CommandResult, responses=WRITE_ERRORS,
            summary="Make a worker the queue's consumer, or change its settings "
            "(409 `consumer_exists` when another worker consumes it)")
async def set_consumer(ns: Namespace, name: QueueName, body: ConsumerIn, ctx: Ctx,
                       principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    await _queue(ctx, ns, name)
    await worker_doc(ctx, ns, body.worker)
    if body.dead_letter_queue:
        await _queue(ctx, ns, body.dead_letter_queue)
    return await _accepted(ctx, principal, QueueConsumerSet(
        namespace=ns, name=name, **body.model_dump()), idem, name)


@router.delete("/{name}/consumer", response_model=CommandResult, responses=WRITE_ERRORS,
               summary="Stop a worker consuming the queue (its messages wait)")
async def remove_consumer(ns: Namespace, name: QueueName, ctx: Ctx, principal: Auth,
                          worker: Annotated[str, Query(pattern=NAME_PATTERN)],
                          idem: IdemKey = None) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    doc = await _queue(ctx, ns, name)
    consumer = doc.get("consumer") or {}
    if consumer.get("worker") != worker:
        raise ApiError(404, "consumer_not_found",
                       f"worker {worker!r} does not consume queue {name!r} of namespace {ns}")
    return await _accepted(ctx, principal, QueueConsumerRemoved(
        namespace=ns, name=name, worker=worker), idem, name)


class RedriveIn(_Strict):
    to: str = Field("", max_length=63, description="the queue to move them to (default: the "
                    "queue whose consumer dead-letters into this one)")


async def _service(request: Request, method: str, path: str, *,
                   params: dict[str, str] | None = None,
                   body: dict[str, Any] | None = None) -> Any:
    configured = getattr(request.app.state, "queues", None)
    url, token = configured if configured is not None else (
        os.environ.get("WDL_QUEUES_URL"), os.environ.get("WDL_INTERNAL_TOKEN"))
    if not url or not token:
        raise ApiError(503, "queues_unavailable", "this control API does not know the queue "
                       "service (set WDL_QUEUES_URL and WDL_INTERNAL_TOKEN)")
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            r = await client.request(method, str(url).rstrip("/") + path, params=params,
                                     json=body, headers={"x-wdl-internal-token": str(token)})
        doc = r.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise ApiError(503, "queues_unavailable", f"the queue service is unreachable: {exc}"
                       ) from None
    if r.status_code >= 400:
        raise ApiError(r.status_code, str(doc.get("error", "queues_error")),
                       str(doc.get("message", "")))
    return doc


@router.get("/{name}/messages", responses=READ_ERRORS,
            summary="Messages the queue service holds for the queue (read, not being "
            "delivered: a dead-letter queue without a consumer keeps them)")
async def held_messages(ns: Namespace, name: QueueName, ctx: Ctx, principal: Auth,
                        request: Request,
                        limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns)
    await _queue(ctx, ns, name)
    doc: dict[str, Any] = await _service(request, "GET", "/held", params={
        "namespace": ns, "queue": name, "limit": str(limit)})
    return doc


@router.post("/{name}/redrive", responses=WRITE_ERRORS,
             summary="Move the held messages of a dead-letter queue back to a queue")
async def redrive(ns: Namespace, name: QueueName, body: RedriveIn, ctx: Ctx, principal: Auth,
                  request: Request) -> dict[str, Any]:
    await namespace_doc(ctx, principal, ns, write=True)
    await _queue(ctx, ns, name)
    to = body.to
    if not to:
        sources = sorted(q for q, doc in (await ctx.reader.resources("queue", ns)).items()
                         if (doc.get("consumer") or {}).get("dead_letter_queue") == name)
        if len(sources) != 1:
            raise ApiError(400, "redrive_target_required",
                           f"queue {name!r} is the dead-letter queue of "
                           f"{len(sources)} queues; name the one to move them to (`to`)")
        to = sources[0]
    await _queue(ctx, ns, to)
    doc: dict[str, Any] = await _service(request, "POST", "/redrive", body={
        "namespace": ns, "queue": name, "to": to})
    return {"moved": doc["moved"], "to": to}
