"""Freshness leases (services/state/leases.py): a round grants one, a write is pushed to
every holder before propagate() returns, and a holder that does not confirm is
waited out. The "gateway" here is a real HTTP server on loopback recording pushes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from projections import keys
from projections.changes import Changes
from projections.memory_store import MemoryProjectionStore
from services.serving import HttpServer
from services.state.app import create_state_app
from services.state.incidents import IncidentDesk
from services.state.instances import LoadRegistry
from services.state.leases import GatewayLeases
from services.state.view import RouteView

TOKEN = "internal-token"


class FakeGateway:
    """Answers pushes like gateway.js: 200 after recording, or not at all when stuck."""

    def __init__(self) -> None:
        self.pushes: list[dict[str, Any]] = []
        self.stuck = False

    async def sync(self, request: Request) -> JSONResponse:
        if self.stuck:
            await asyncio.sleep(30)
        assert request.headers["x-wdl-internal-token"] == TOKEN
        doc = json.loads(await request.body())
        self.pushes.append(doc)
        return JSONResponse({"epoch": doc["epoch"]})


async def _write(store: MemoryProjectionStore, ns: str, offset: int) -> None:
    gen = await store.current_generation()
    changes = Changes()
    changes.set(keys.NAMESPACES, ns, json.dumps({"v": offset}))
    changes.positions[0] = offset
    await store.apply(gen, changes, {0: offset - 1} if offset > 1 else {})


async def _setup(lease_ms: int) -> tuple[Any, RouteView, GatewayLeases]:
    store = MemoryProjectionStore()
    view = RouteView(store)
    await view.sync()
    leases = GatewayLeases(view, lease_ms=lease_ms, internal_token=TOKEN,
                           push_timeout_s=0.3)
    await leases.start()
    leases._booted -= lease_ms / 1000  # not a fresh boot: no start-up wait
    app = create_state_app(view, None, LoadRegistry(),  # type: ignore[arg-type]
                           domain="workers.local", desk=IncidentDesk(),
                           internal_token=TOKEN, leases=leases)
    return app, view, leases


@contextlib.asynccontextmanager
async def _leased(lease_ms: int, *, stuck: bool = False) -> AsyncIterator[
        tuple[FakeGateway, str, Any, RouteView, GatewayLeases, MemoryProjectionStore]]:
    """A fake gateway on loopback and a state app granting `lease_ms` leases."""
    gw = FakeGateway()
    gw.stuck = stuck
    server = HttpServer(Starlette(routes=[Route("/__wdl/sync", gw.sync, methods=["POST"])]))
    await server.start()
    app, view, leases = await _setup(lease_ms)
    store = view.store
    assert isinstance(store, MemoryProjectionStore)
    try:
        yield gw, f"{server.address[0]}:{server.address[1]}", app, view, leases, store
    finally:
        await leases.stop()
        await server.stop()


async def test_a_write_reaches_every_holder_before_propagate_returns() -> None:
    async with _leased(1000) as (gw, push, app, view, leases, store), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                              base_url="http://state",
                              headers={"x-wdl-internal-token": TOKEN}) as client:
        assert (await client.get("/route?ns=a&worker=w")).status_code == 200  # cached
        r = await client.get(f"/sync?boot={view.boot}&epoch=0&instance=gw0&push={push}")
        assert r.json()["lease_ms"] == 1000
        # Without a push address there is nowhere to push to: no lease.
        r = await client.get(f"/sync?boot={view.boot}&epoch=0&instance=gw1")
        assert r.json()["lease_ms"] == 0

        await _write(store, "a", 1)
        epoch = await leases.propagate()
        assert epoch == 1
        assert [(p["since"], p["epoch"], p["namespaces"]) for p in gw.pushes] == [
            (0, 1, ["a"])]
        # Confirmed: the next write is relative to it; nothing changed, nothing pushed.
        await leases.propagate()
        assert len(gw.pushes) == 1

        # The remote form, for a control API in another process.
        await _write(store, "a", 2)
        r = await client.post("/propagate")
        assert r.status_code == 200 and r.json()["epoch"] == 2
        assert gw.pushes[-1]["since"] == 1 and gw.pushes[-1]["epoch"] == 2
        assert (await client.post("/propagate", headers={"x-wdl-internal-token": "x"})
                ).status_code == 401


async def test_a_holder_that_does_not_confirm_is_waited_out_then_forgotten() -> None:
    async with _leased(600, stuck=True) as (_gw, push, app, view, leases, store), \
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                              base_url="http://state",
                              headers={"x-wdl-internal-token": TOKEN}) as client:
        await client.get("/route?ns=a&worker=w")
        granted = time.monotonic()
        r = await client.get(f"/sync?boot={view.boot}&epoch=0&instance=gw0&push={push}")
        assert r.json()["lease_ms"] == 600
        await _write(store, "a", 1)
        await leases.propagate()
        # It returned only once the lease this side granted was over.
        assert time.monotonic() - granted >= 0.6
        assert leases.waited_out == 1 and leases.holders() == []


async def test_a_restarted_state_service_waits_out_leases_of_its_previous_boot() -> None:
    store = MemoryProjectionStore()
    view = RouteView(store)
    leases = GatewayLeases(view, lease_ms=400, internal_token=TOKEN)
    # The wait is counted from the boot start() records, so measure from before it:
    # on a loaded machine start() itself can take a good part of the lease.
    before_boot = time.monotonic()
    await leases.start()
    try:
        await leases.propagate()
        assert time.monotonic() - before_boot >= 0.399
        await leases.propagate()  # past the first lease length: nothing to wait for
        assert leases.holders() == []
    finally:
        await leases.stop()


async def test_no_leases_when_off() -> None:
    app, view, leases = await _setup(0)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://state",
                                 headers={"x-wdl-internal-token": TOKEN}) as client:
        r = await client.get(f"/sync?boot={view.boot}&epoch=0&instance=gw0&push=127.0.0.1:9")
        assert r.json()["lease_ms"] == 0
    assert leases.holders() == []
    await leases.stop()
