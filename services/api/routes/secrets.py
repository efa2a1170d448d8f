"""Secrets per namespace and per worker: put, list names, delete.

Values are sealed with the keyring before the event exists; only the sealed
form reaches the log. Nothing here returns, logs or quotes a value.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from eventlog.events import SecretDeleted, SecretPut
from eventlog.validation import secret_name
from services.api.auth import Auth, Principal
from services.api.commands import build, idempotency_key, submit
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.models import SECRET_NAME_PATTERN, CommandResult, SecretValue
from services.api.routes.common import (
    READ_ERRORS,
    WRITE_ERRORS,
    Ctx,
    IdemKey,
    Namespace,
    WorkerName,
    namespace_doc,
    worker_doc,
)
from services.crypto.context import SecretContext

router = APIRouter(prefix="/v1/namespaces/{ns}", tags=["secrets"])
SecretName = Annotated[str, Path(pattern=SECRET_NAME_PATTERN)]


async def _scope(ctx: ApiContext, principal: Principal, ns: str, worker: str | None, *,
                 write: bool) -> None:
    await namespace_doc(ctx, principal, ns, write=write)
    if worker is not None:
        await worker_doc(ctx, ns, worker)


async def _list(ctx: ApiContext, ns: str, worker: str | None) -> list[dict[str, Any]]:
    docs = await ctx.reader.secrets(ns, worker)
    return [{"name": name, "key_id": doc.get("key_id"), "updated_at": doc.get("updated_at")}
            for name, doc in sorted(docs.items())]


async def _put(ctx: ApiContext, principal: Principal, ns: str, worker: str | None, name: str,
               body: SecretValue, idem: str | None) -> dict[str, Any]:
    await _scope(ctx, principal, ns, worker, write=True)
    secret_name("name", name)
    held = await ctx.reader.secrets(ns, worker)
    if name not in held:  # replacing a secret never counts
        ctx.quotas.check("secrets", len(held), f"worker {worker}" if worker
                         else f"namespace {ns}", way_out="delete a secret first")
    sealed = ctx.keyring.seal(SecretContext(namespace=ns, worker=worker, name=name), body.value)
    env = build(ctx, principal, SecretPut(namespace=ns, worker=worker, name=name, sealed=sealed),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()


async def _delete(ctx: ApiContext, principal: Principal, ns: str, worker: str | None,
                  name: str, idem: str | None) -> dict[str, Any]:
    await _scope(ctx, principal, ns, worker, write=True)
    if name not in await ctx.reader.secrets(ns, worker):
        raise ApiError(404, "secret_not_found", f"secret {name!r} not found")
    env = build(ctx, principal, SecretDeleted(namespace=ns, worker=worker, name=name),
                idempotency=idempotency_key(principal, idem))
    return (await submit(ctx, env)).require_accepted().as_dict()


@router.get("/secrets", responses=READ_ERRORS)
async def list_namespace_secrets(ns: Namespace, ctx: Ctx,
                                 principal: Auth) -> list[dict[str, Any]]:
    """Names (and sealing key ids) of the namespace's secrets; never values."""
    await _scope(ctx, principal, ns, None, write=False)
    return await _list(ctx, ns, None)


@router.put("/secrets/{name}", response_model=CommandResult, responses=WRITE_ERRORS)
async def put_namespace_secret(ns: Namespace, name: SecretName, body: SecretValue, ctx: Ctx,
                               principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    return await _put(ctx, principal, ns, None, name, body, idem)


@router.delete("/secrets/{name}", response_model=CommandResult, responses=WRITE_ERRORS)
async def delete_namespace_secret(ns: Namespace, name: SecretName, ctx: Ctx, principal: Auth,
                                  idem: IdemKey = None) -> dict[str, Any]:
    return await _delete(ctx, principal, ns, None, name, idem)


@router.get("/workers/{worker}/secrets", responses=READ_ERRORS)
async def list_worker_secrets(ns: Namespace, worker: WorkerName, ctx: Ctx,
                              principal: Auth) -> list[dict[str, Any]]:
    await _scope(ctx, principal, ns, worker, write=False)
    return await _list(ctx, ns, worker)


@router.put("/workers/{worker}/secrets/{name}", response_model=CommandResult,
            responses=WRITE_ERRORS)
async def put_worker_secret(ns: Namespace, worker: WorkerName, name: SecretName,
                            body: SecretValue, ctx: Ctx, principal: Auth,
                            idem: IdemKey = None) -> dict[str, Any]:
    return await _put(ctx, principal, ns, worker, name, body, idem)


@router.delete("/workers/{worker}/secrets/{name}", response_model=CommandResult,
               responses=WRITE_ERRORS)
async def delete_worker_secret(ns: Namespace, worker: WorkerName, name: SecretName, ctx: Ctx,
                               principal: Auth, idem: IdemKey = None) -> dict[str, Any]:
    return await _delete(ctx, principal, ns, worker, name, idem)
