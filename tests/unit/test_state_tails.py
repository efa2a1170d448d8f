"""The tailed set of the state service (services/state/tails.py): route answers, epochs,
the stats' stale counting and the report endpoint."""

from __future__ import annotations

import httpx

from projections import keys
from projections.changes import Changes
from projections.memory_store import MemoryProjectionStore
from services.state.app import create_state_app
from services.state.instances import LoadRegistry
from services.state.tails import TailedSet
from services.state.view import RouteView

TOKEN = "tok"


async def test_a_tailed_worker_gets_its_own_isolate_and_a_new_epoch() -> None:
    store = MemoryProjectionStore()
    gen = await store.current_generation()
    changes = Changes()
    changes.set(keys.NAMESPACES, "bench", "{}")
    changes.set(keys.routes("bench"), "hello", "v1")
    changes.positions[0] = 1
    await store.apply(gen, changes, {})
    view = RouteView(store)
    tails = TailedSet(view, ttl_s=60)
    loads = LoadRegistry()
    app = create_state_app(view, None, loads,  # type: ignore[arg-type]
                           domain="workers.local", internal_token=TOKEN, tails=tails)
    headers = {"x-wdl-internal-token": TOKEN}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://state", headers=headers) as client:
        async def route() -> dict[str, object]:
            return dict((await client.get("/route?ns=bench&worker=hello")).json()["route"])

        plain = await route()
        assert plain["id"] == "bench:hello:v1" and "tail" not in plain
        epoch = view.epoch
        report = {"source": "data-1", "tailed": [["bench", "hello"]]}
        assert (await client.post("/tails", json=report,
                                  headers={"x-wdl-internal-token": ""})).status_code == 401
        assert (await client.post("/tails", json={"source": "x", "tailed": [["a"]]},
                                  headers=headers)).status_code == 400
        r = await client.post("/tails", json=report, headers=headers)
        assert r.status_code == 200 and r.json()["tailed"] == 1
        ch = view.changes_since(epoch, view.boot)
        assert ch.namespaces == {"bench"} and not ch.flush, "gateways drop the route"
        assert await route() == {**plain, "id": "bench:hello:v1:t", "tail": True}

        # The same report again changes nothing; an isolate no route names is stale.
        epoch = view.epoch
        await client.post("/tails", json=report, headers=headers)
        assert view.epoch == epoch
        loads.record("gw", "bench:hello:v1", "bench", "hello")
        loads.record("gw", "bench:hello:v1:t", "bench", "hello")
        assert (await client.get("/stats?instance=gw")).json()["stale"] == 1

        # Another source's set adds up; a source that stops reporting is forgotten.
        await tails.replace("data-2", [("bench", "other")])
        assert tails.tailed("bench", "hello") and tails.tailed("bench", "other")
        await client.post("/tails", json={"source": "data-1", "tailed": []}, headers=headers)
        assert (await route())["id"] == "bench:hello:v1"
        tails.ttl_s = 0
        await tails.replace("data-2", [("bench", "other")])
        await tails.expire()
        assert not tails.pairs
