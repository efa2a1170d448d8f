"""The control API's FastAPI application.

`create_app` only wires already-opened backends together; the caller owns
their lifecycle (`projections.runtime.open_backends`, `open_blob_store`).
With `run_projector=True` (the embedded, single-process `wdl dev`) the app's
lifespan also runs a projector over the same backends; in production a
separate `python -m projections` does that and the API only reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from projections.projector import Projector
from projections.reader import ProjectionReader
from projections.runtime import Backends
from services.api.context import ApiContext
from services.api.errors import install_handlers
from services.api.guard import ErrorGuard
from services.api.limits import BodyLimit
from services.api.request_ids import RequestIds
from services.api.routes import (
    assets,
    audit,
    d1,
    deploy,
    hosts,
    hyperdrive,
    kv_data,
    leases,
    namespaces,
    policies,
    quarantine,
    queues,
    r2_data,
    resources,
    secrets,
    system,
    tail,
    tokens,
    workers,
    workflows,
)
from services.api.tail import TailUpstream
from services.blobstore.port import BlobStore
from services.crypto.keyring import Keyring
from services.d1.client import D1Client
from services.hostpolicy import HostPolicy
from services.settings import Settings

log = logging.getLogger("wdl.api")
# R2 object bodies stream to the store without buffering: R2's single-put limit.
R2_OBJECT_PATH = re.compile(r"/v1/namespaces/[^/]+/r2/[^/]+/objects/")
R2_MAX_PUT_BYTES = 5 * 1024**3 - 5 * 1024**2
API_VERSION = "1"


def create_app(settings: Settings, backends: Backends, keyring: Keyring, blobs: BlobStore, *,
               run_projector: bool = False, kv: Any = None, r2: Any = None,
               data_url: str | None = None, internal_token: str | None = None,
               d1_url: str | None = None,
               host_policy: HostPolicy | None = None) -> FastAPI:
    """`kv` / `r2`: opened tenant data stores (services/kv, services/r2); without them the
    data routes answer 503 and resource deletes leave the data for a later purge.
    `data_url` + `internal_token`: the data service, for live tail (else it answers 503).
    `host_policy`: the platform domain, host verification and DNS resolver (docs/hosts.md)."""
    upstream = TailUpstream(data_url, internal_token) if data_url and internal_token else None
    ctx = ApiContext(settings=settings, log=backends.log, store=backends.store,
                     audit=backends.audit, keyring=keyring, blobs=blobs,
                     reader=ProjectionReader(backends.store), kv=kv, r2=r2, tail=upstream,
                     d1=D1Client(d1_url, internal_token) if d1_url and internal_token
                     else None,
                     hosts=host_policy if host_policy is not None else HostPolicy())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctx.store.current_generation()  # make sure a generation exists to read
        if upstream is not None:
            await upstream.start()
        stop = asyncio.Event()
        task: asyncio.Task[None] | None = None
        if run_projector:
            task = asyncio.create_task(Projector(ctx.log, ctx.store, ctx.audit).run(stop),
                                       name="wdl-embedded-projector")
        try:
            yield
        finally:
            stop.set()
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if upstream is not None:
                await upstream.stop()

    app = FastAPI(title="WDL control API", version=API_VERSION, lifespan=lifespan,
                  description="Namespaces, versions, secrets, hosts, leases, audit and "
                  "tokens. Every change is an event; responses carry its verdict.")
    app.state.ctx = ctx
    install_handlers(app)
    for module in (system, namespaces, workers, deploy, secrets, hosts, leases, audit, tokens,
                   resources, policies, kv_data, r2_data, quarantine, tail, d1,
                   queues, workflows, assets, hyperdrive):
        app.include_router(module.router)
    app.add_middleware(ErrorGuard)
    app.add_middleware(BodyLimit, max_bytes=ctx.limits.max_request_bytes,
                       overrides=[(R2_OBJECT_PATH, R2_MAX_PUT_BYTES)])
    app.add_middleware(RequestIds)  # added last: the outermost layer
    return app
