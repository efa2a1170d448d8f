"""The state service's host table: where verification is on, only a verified owner's
claims route (docs/hosts.md); the claims it hands gateways (`/hosts`) are those."""

from __future__ import annotations

import json

import pytest

from projections import keys
from projections.changes import Changes
from projections.memory_store import MemoryProjectionStore
from services.state.routing import NoTarget, Target, resolve_target
from services.state.view import RouteView

pytestmark = pytest.mark.unit


def _doc(namespace: str, worker: str, *, verified: bool) -> str:
    return json.dumps({"namespace": namespace, "worker": worker, "match": "exact",
                       "version": 1, "verified": verified})


async def _store() -> MemoryProjectionStore:
    store = MemoryProjectionStore()
    gen = await store.current_generation()
    changes = Changes()
    changes.set(keys.HOSTS, "proven.example.test", _doc("acme", "web", verified=True))
    changes.set(keys.HOSTS, "unproven.example.test", _doc("evil", "x", verified=False))
    changes.set(keys.HOSTS, "old.example.test", json.dumps(  # written before proofs existed
        {"namespace": "acme", "worker": "old", "match": "exact", "version": 1}))
    changes.positions[0] = 1
    await store.apply(gen, changes, {})
    return store


@pytest.mark.parametrize(("verified_only", "routed"), [
    (True, ["proven.example.test"]),
    (False, ["old.example.test", "proven.example.test", "unproven.example.test"]),
])
async def test_only_proven_claims_route_where_verification_is_on(
        verified_only: bool, routed: list[str]) -> None:
    view = RouteView(await _store(), verified_hosts_only=verified_only)
    assert sorted(c.pattern for c in await view.claims()) == routed
    table = await view.host_table()
    for host in ("proven.example.test", "unproven.example.test", "old.example.test"):
        target = resolve_target(host, "/", "workers.local", table)
        if host in routed:
            assert isinstance(target, Target), host
        else:
            assert isinstance(target, NoTarget) and target.code == "unknown_host", host
