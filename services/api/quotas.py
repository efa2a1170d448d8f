"""Quotas: how much of the control plane's state one namespace may make.

Every record a tenant creates lives in the projections forever (and is re-folded at
every rebuild), every version's bundle in the blob store, every backup too. Without
a bound, one deployer token grows the platform's state, its rebuild time and its disk
without end. Each create path checks its count here before the event is written:
over the quota, 409 `quota_exceeded` naming the count, the bound, its setting and the
way out; nothing is written.

The bounds follow Cloudflare's account limits where it has one (Workers Paid): 500
workers, 128 variables and secrets per worker, 1000 KV namespaces and R2 buckets,
10 000 queues, 50 000 D1 databases (WDL's default is lower: each is a file). They are
counted per namespace, and an operator changes them with the `WDL_QUOTA_*` settings.

The check reads the projection, then the event is written: creates racing past the
last free place all landed (30 concurrent requests, 30 queues against a quota of 3).
So each create path holds `QuotaLocks.hold(kind, where)` from its count to its event's
verdict: in one API process the creates of one kind and place take turns. (Several API
replicas each have their own locks: at most one over per replica.)
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields

from eventlog.bindings import SPECS
from services.api.errors import ApiError


@dataclass(frozen=True)
class Quotas:
    workers: int = 500  # per namespace
    versions: int = 1000  # retained (not deleted) versions per worker
    secrets: int = 128  # per worker, and per namespace for namespace-wide secrets
    hosts: int = 100  # host claims per namespace
    kv: int = 1000  # KV namespaces per namespace
    r2: int = 1000  # R2 buckets
    d1: int = 1000  # D1 databases
    queues: int = 1000
    d1_backups: int = 100  # per database
    hyperdrive: int = 25  # Hyperdrive configs (Cloudflare's Workers Paid limit)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Quotas:
        source = os.environ if env is None else env
        values: dict[str, int] = {}
        for f in fields(cls):
            raw = source.get(setting(f.name))
            if raw:
                value = int(raw)
                if value < 1:
                    raise ValueError(f"{setting(f.name)} must be at least 1, got {value}")
                values[f.name] = value
        return cls(**values)

    def check(self, kind: str, count: int, where: str, *, way_out: str) -> None:
        """Raise 409 `quota_exceeded` if `where` already holds `count` >= the quota."""
        bound = getattr(self, kind)
        if count >= bound:
            raise ApiError(409, "quota_exceeded",
                           f"{where} has {count} {LABELS[kind]}, the most it may have "
                           f"({setting(kind)}={bound}); {way_out}")


LABELS: Mapping[str, str] = {
    "workers": "workers", "versions": "versions", "secrets": "secrets",
    "hosts": "host claims", "queues": "queues", "d1_backups": "backups",
    "hyperdrive": "Hyperdrive configs",
    # The resource kinds, as the binding registry calls them.
    **{kind: f"{SPECS[kind].label}s" for kind in ("kv", "r2", "d1")},
}


def setting(kind: str) -> str:
    return f"WDL_QUOTA_{kind.upper()}"


class QuotaLocks:
    """One lock per (kind, place) while anyone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, kind: str, where: str) -> AsyncIterator[None]:
        key = (kind, where)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
