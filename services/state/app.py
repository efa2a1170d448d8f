"""HTTP endpoints of the state service (Starlette), called by the gateway over loopback.

Every answer that a cache may keep carries the epoch of the route view it was
computed at; the gateway keeps it only if no newer invalidation reached it
meanwhile (docs/dataplane.md).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from services.blobstore import BlobStoreError
from services.state.bundles import BundleError, BundleSource
from services.state.incident_routes import incident_routes
from services.state.incidents import IncidentDesk, parse_targets
from services.state.instances import LoadRegistry
from services.state.quarantine import Quarantiner
from services.state.routing import NoTarget, resolve_target
from services.state.view import Missing, RouteView


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status,
                        headers={"cache-control": "no-store"})


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise BundleError(400, "bad_request", f"query parameter {name!r} is required")
    return value


def create_state_app(view: RouteView, bundles: BundleSource, loads: LoadRegistry,
                     *, domain: str, desk: IncidentDesk | None = None,
                     quarantiner: Quarantiner | None = None, internal_token: str = "",
                     registry: CollectorRegistry | None = None) -> Starlette:
    desk = desk if desk is not None else IncidentDesk()
    registry = registry if registry is not None else CollectorRegistry()

    async def healthz(request: Request) -> Response:
        epoch = await view.sync()
        position = view.position
        return _json({"ok": True, "boot": view.boot, "epoch": epoch,
                      "generation": position[0] if position else None,
                      "applied": {str(p): o for p, o in (position[1] if position else {}).items()},
                      "cached_namespaces": view.cached_namespaces()})

    async def sync(request: Request) -> Response:
        since = int(request.query_params.get("epoch", "-1") or -1)
        if request.method == "POST":
            # The round's markers (services/state/incidents.py): cheap, and never a reason
            # to fail the round.
            try:
                marks = await request.json()
            except ValueError:
                marks = None
            if isinstance(marks, dict) and isinstance(marks.get("instance"), str):
                targets, cut = parse_targets(marks.get("targets"), desk.policy.max_targets)
                done = [t for t in marks.get("done") or [] if isinstance(t, str)]
                desk.observe(marks["instance"], targets, truncated=cut or bool(
                    marks.get("truncated")), done=done)
        view.touch(desk.expire())
        await view.sync()
        ch = view.changes_since(since, request.query_params.get("boot"))
        return _json({"boot": view.boot, "epoch": ch.epoch, "flush": ch.flush,
                      "namespaces": sorted(ch.namespaces), "hosts": ch.hosts})

    async def route(request: Request) -> Response:
        epoch = view.epoch  # before reading: an answer is never newer than its epoch claims
        ns, worker = _param(request, "ns"), _param(request, "worker")
        found = await view.route(ns, worker)
        if isinstance(found, Missing):
            return _json({"boot": view.boot, "epoch": epoch,
                          "missing": {"code": found.code, "message": found.message,
                                      "status": found.status}})
        route: dict[str, Any] = {"version": found.version, "id": found.loader_id,
                 "egress": found.egress, "grants": list(found.grants)}
        if found.limits:
            route["limits"] = found.limits
        if desk.on_probation(ns, worker):
            route["probation"] = True
        return _json({"boot": view.boot, "epoch": epoch, "route": route})

    async def hosts(request: Request) -> Response:
        epoch = view.epoch
        claims = await view.claims()
        return _json({"boot": view.boot, "epoch": epoch, "claims": [
            {"pattern": c.pattern, "namespace": c.namespace, "worker": c.worker,
             "match": c.match} for c in claims.values()]})

    async def resolve(request: Request) -> Response:
        await view.sync()
        target = resolve_target(_param(request, "host"), request.query_params.get("path", "/"),
                                domain, await view.claims())
        if isinstance(target, NoTarget):
            return _json({"code": target.code, "message": target.message}, 404)
        found = await view.route(target.namespace, target.worker)
        if isinstance(found, Missing):
            return _json({"code": found.code, "message": found.message}, found.status)
        return _json({"namespace": found.namespace, "worker": found.worker,
                      "version": found.version, "loader_id": found.loader_id,
                      "path": target.path})

    async def bundle(request: Request) -> Response:
        ns, worker = _param(request, "ns"), _param(request, "worker")
        version = _param(request, "version")
        try:
            body = await bundles.bundle(ns, worker, version)
        except BlobStoreError as exc:
            return _json({"code": "bundle_unavailable",
                          "message": f"{ns}/{worker} {version}: {exc.code}"}, 502)
        instance = request.query_params.get("instance")
        if instance:
            loads.record(instance, body["id"], ns, worker)
        return _json(body)

    async def stats(request: Request) -> Response:
        instance = _param(request, "instance")
        loaded = loads.loaded(instance)
        stale = 0
        for lid, (ns, worker) in loaded.items():
            current = await view.route(ns, worker)
            if isinstance(current, Missing) or current.loader_id != lid:
                stale += 1
        return _json({"instance": instance, "loaded": len(loaded), "stale": stale})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def errors(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BundleError)
        return _json({"code": exc.code, "message": exc.message}, exc.status)

    return Starlette(routes=[
        HttpRoute("/healthz", healthz),
        HttpRoute("/sync", sync, methods=["GET", "POST"]),
        HttpRoute("/route", route),
        HttpRoute("/hosts", hosts),
        HttpRoute("/resolve", resolve),
        HttpRoute("/bundle", bundle),
        HttpRoute("/stats", stats),
        HttpRoute("/metrics", metrics),
        *incident_routes(view, desk, quarantiner, internal_token=internal_token,
                         registry=registry),
    ], exception_handlers={BundleError: errors})
