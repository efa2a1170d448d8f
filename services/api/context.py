"""What every request handler needs, built once per app (no module globals)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request

from eventlog.port import EventLog
from projections.audit_store import AuditStore
from projections.reader import ProjectionReader
from projections.store import ProjectionStore
from services.api.quotas import Quotas
from services.blobstore.port import BlobStore
from services.bundles import BundleLimits
from services.crypto.keyring import Keyring
from services.hostpolicy import HostPolicy
from services.settings import Settings


@dataclass
class ApiContext:
    settings: Settings
    log: EventLog
    store: ProjectionStore
    audit: AuditStore
    keyring: Keyring
    blobs: BlobStore
    reader: ProjectionReader
    limits: BundleLimits = field(default_factory=BundleLimits)
    quotas: Quotas = field(default_factory=Quotas.from_env)
    kv: Any = None  # services.kv KvStore, opened by the process owner
    r2: Any = None  # services.r2 R2Store
    tail: Any = None  # services.api.tail TailUpstream, when the data service is known
    d1: Any = None  # services.d1.client D1Client, when a D1 replica is known
    # Awaited after an accepted verdict, before the answer: gateways with a freshness
    # lease drop what the command changed (services/api/propagate.py).
    propagate: Any = None
    # The platform domain, host verification and the DNS resolver (docs/hosts.md).
    hosts: HostPolicy = field(default_factory=HostPolicy)
    verdict_timeout_s: float = 10.0
    audit_catch_up_s: float = 3.0


async def get_ctx(request: Request) -> ApiContext:
    # async: FastAPI runs a plain `def` dependency in its thread pool, a thread hop
    # on every request (docs/api.md, Performance).
    ctx: ApiContext = request.app.state.ctx
    return ctx
