"""The state service's `/sync` (the barrier round): markers, `same=1`, change lists."""

from __future__ import annotations

import json
from typing import Any

import httpx

from projections import keys
from projections.changes import Changes
from projections.memory_store import MemoryProjectionStore
from services.state.app import create_state_app
from services.state.incidents import IncidentDesk, Target
from services.state.instances import LoadRegistry
from services.state.view import RouteView

A = ["bench", "hello", "v1"]
TOKEN = "internal-token"


def _app(store: MemoryProjectionStore) -> tuple[Any, RouteView, IncidentDesk]:
    view = RouteView(store)
    desk = IncidentDesk()
    app = create_state_app(view, None, LoadRegistry(),  # type: ignore[arg-type]
                           domain="workers.local", desk=desk, internal_token=TOKEN)
    return app, view, desk


def _last_round(desk: IncidentDesk, instance: str) -> tuple[frozenset[Target], bool]:
    last = desk._trails[instance].rounds[-1]
    return last.targets, last.truncated


async def test_markers_then_same_repeats_them_and_an_unknown_instance_is_truncated() -> None:
    app, view, desk = _app(MemoryProjectionStore())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://state",
                                 headers={"x-wdl-internal-token": TOKEN}) as client:
        body = {"instance": "gw0", "targets": [A], "truncated": False, "done": []}
        r = await client.post(f"/sync?boot={view.boot}&epoch=0", content=json.dumps(body))
        assert r.status_code == 200
        assert r.json() == {"boot": view.boot, "epoch": 0, "flush": False, "namespaces": [],
                            "hosts": False, "lease_ms": 0}
        assert _last_round(desk, "gw0") == (frozenset({Target(A[0], A[1], A[2])}), False)

        r = await client.get(f"/sync?boot={view.boot}&epoch=0&instance=gw0&same=1")
        assert r.status_code == 200 and not r.json()["flush"]
        assert len(desk._trails["gw0"].rounds) == 2
        assert _last_round(desk, "gw0") == (frozenset({Target(A[0], A[1], A[2])}), False)

        # Markers this service never got (it restarted): the round can blame nobody.
        await client.get(f"/sync?boot={view.boot}&epoch=0&instance=gw1&same=1")
        assert _last_round(desk, "gw1") == (frozenset(), True)

        # A body that is not JSON never fails the round.
        r = await client.post(f"/sync?boot={view.boot}&epoch=0", content=b"{nope")
        assert r.status_code == 200
        assert (await client.put("/sync")).status_code == 405


async def test_sync_lists_what_changed_since_the_asking_epoch() -> None:
    store = MemoryProjectionStore()
    app, view, _ = _app(store)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://state",
                                 headers={"x-wdl-internal-token": TOKEN}) as client:
        r = await client.get("/sync?epoch=-1")
        assert r.json()["flush"] is True  # no boot: start over
        assert (await client.get("/route?ns=bench&worker=hello")).json()["missing"]
        gen = await store.current_generation()
        changes = Changes()
        changes.set(keys.NAMESPACES, "bench", "{}")
        changes.positions[0] = 1
        await store.apply(gen, changes, {})
        r = await client.get(f"/sync?boot={view.boot}&epoch=0")
        doc = r.json()
        assert doc["epoch"] == 1 and doc["namespaces"] == ["bench"] and not doc["flush"]
        r = await client.get(f"/sync?boot={view.boot}&epoch=1")
        assert r.json() == {"boot": view.boot, "epoch": 1, "flush": False, "namespaces": [],
                            "hosts": False, "lease_ms": 0}
        assert (await client.get("/healthz")).status_code == 200
