"""HTTP endpoints of the state service (Starlette), called by the gateway over loopback.

Every endpoint, `/sync`'s fast path included, is behind the internal token
(services/internal.py): `/bundle` hands out decrypted secrets, `/enter`, `/incident`
and `/sync`'s markers decide whom the watchdog blames, and `/route`, `/hosts` and
`/resolve` map every tenant. Only the workerd runtimes that run tenant code (the
gateway and the Durable Object host) and the platform's own processes hold it.

Every answer that a cache may keep carries the epoch of the route view it was
computed at; the gateway keeps it only if no newer invalidation reached it
meanwhile (docs/dataplane.md).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any
from urllib.parse import parse_qsl

import msgspec
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute
from starlette.types import Receive, Scope, Send

from services.blobstore import BlobStoreError
from services.blobstore.ref import is_digest
from services.internal import InternalTokenGuard
from services.state.assets import AssetMissing, AssetSource
from services.state.bundles import BundleError, BundleSource
from services.state.incident_routes import incident_routes
from services.state.incidents import IncidentDesk, Target, parse_targets
from services.state.instances import LoadRegistry
from services.state.leases import GatewayLeases
from services.state.quarantine import Striker
from services.state.routing import NoTarget, off_namespace_url, on_namespace_url, resolve_target
from services.state.tails import TAIL_SUFFIX, TailedSet, parse_pairs
from services.state.view import Missing, RouteView


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status,
                        headers={"cache-control": "no-store"})


_SYNC_HEADERS = [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]
_MAX_MARKS = 1 << 20
_encode = msgspec.json.Encoder()
_decode = msgspec.json.Decoder()


class SyncFastPath:
    """`/sync` - the barrier round every gateway request waits for - as plain ASGI in
    front of the Starlette app: it runs a few thousand times a second under load, on
    cores the gateway also needs, so it skips routing, Request/Response objects and
    stdlib JSON. Everything else goes to `app`.

    `GET|POST /sync?boot=B&epoch=E[&instance=I&same=1]`: the POST body carries the
    round's markers (services/state/incidents.py); `same=1` says "the markers of my
    previous round again" (the gateway sends that instead of an identical body, so a
    steady stream of requests costs no body to read or parse). An instance whose last
    markers are unknown here (this service restarted) gets a truncated round: it can
    never single anyone out."""

    # Served here, not by a route of `app` (the route walk of tests/security reads it).
    fast_paths = ("/sync",)

    def __init__(self, app: Starlette, view: RouteView, desk: IncidentDesk,
                 leases: GatewayLeases | None = None, max_instances: int = 256) -> None:
        self.app = app
        self.view = view
        self.desk = desk
        self.leases = leases
        self.max_instances = max_instances
        self._last: OrderedDict[str, tuple[list[Target], bool]] = OrderedDict()
        self._quiet: tuple[str, int, int, bytes] = ("", -1, 0, b"")  # boot, epoch, lease

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/sync":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in ("GET", "POST"):
            await self._send(send, 405, b'{"code":"method_not_allowed"}')
            return
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        body = b""
        if scope["method"] == "POST":
            more = True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = bool(message.get("more_body")) and len(body) <= _MAX_MARKS
        self._observe(query, body)
        await self._send(send, 200, await self.answer(query))

    def _observe(self, query: dict[str, str], body: bytes) -> None:
        # The round's markers: cheap, and never a reason to fail the round.
        instance = query.get("instance")
        if query.get("same") == "1" and instance:
            last = self._last.get(instance)
            targets, cut = last if last is not None else ([], True)
            self.desk.observe(instance, targets, truncated=cut)
            return
        if not body:
            return
        try:
            marks = _decode.decode(body)
        except msgspec.DecodeError:
            return
        if not isinstance(marks, dict) or not isinstance(marks.get("instance"), str):
            return
        instance = marks["instance"]
        targets, cut = parse_targets(marks.get("targets"), self.desk.policy.max_targets)
        cut = cut or bool(marks.get("truncated"))
        done = [t for t in marks.get("done") or [] if isinstance(t, str)]
        self.desk.observe(instance, targets, truncated=cut, done=done)
        self._last[instance] = (targets, cut)
        self._last.move_to_end(instance)
        while len(self._last) > self.max_instances:
            self._last.popitem(last=False)

    async def answer(self, query: dict[str, str]) -> bytes:
        view = self.view
        view.touch(self.desk.expire())
        await view.sync()
        try:
            since = int(query.get("epoch") or -1)
        except ValueError:
            since = -1
        boot = query.get("boot")
        ch = view.changes_since(since, boot)
        # No await between the answer's epoch and the lease (services/state/leases.py).
        lease = 0 if self.leases is None else self.leases.grant(
            query.get("instance"), query.get("push"), since if boot == view.boot else -1)
        if not ch.flush and not ch.namespaces and not ch.hosts:
            qboot, epoch, qlease, quiet = self._quiet
            if qboot != view.boot or epoch != ch.epoch or qlease != lease:
                quiet = _encode.encode({"boot": view.boot, "epoch": ch.epoch, "flush": False,
                                        "namespaces": [], "hosts": False, "lease_ms": lease})
                self._quiet = (view.boot, ch.epoch, lease, quiet)
            return quiet
        return _encode.encode({"boot": view.boot, "epoch": ch.epoch, "flush": ch.flush,
                               "namespaces": sorted(ch.namespaces), "hosts": ch.hosts,
                               "lease_ms": lease})

    @staticmethod
    async def _send(send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status,
                    "headers": [*_SYNC_HEADERS, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _param(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise BundleError(400, "bad_request", f"query parameter {name!r} is required")
    return value


def create_state_app(view: RouteView, bundles: BundleSource, loads: LoadRegistry,
                     *, domain: str, desk: IncidentDesk | None = None,
                     striker: Striker | None = None, internal_token: str = "",
                     registry: CollectorRegistry | None = None,
                     leases: GatewayLeases | None = None,
                     tails: TailedSet | None = None) -> InternalTokenGuard:
    """The app, behind the internal token (an empty one lets nobody in)."""
    desk = desk if desk is not None else IncidentDesk()
    tails = tails if tails is not None else TailedSet(view)
    registry = registry if registry is not None else CollectorRegistry()
    asset_source = AssetSource(view.store, bundles.blobs if bundles is not None else None)

    async def healthz(request: Request) -> Response:
        epoch = await view.sync()
        position = view.position
        return _json({"ok": True, "boot": view.boot, "epoch": epoch,
                      "generation": position[0] if position else None,
                      "applied": {str(p): o for p, o in (position[1] if position else {}).items()},
                      "cached_namespaces": view.cached_namespaces()})

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
        if tails.tailed(ns, worker):  # services/state/tails.py
            route["tail"] = True
            route["id"] = found.loader_id + TAIL_SUFFIX
        if found.limits:
            route["limits"] = found.limits
        if not found.workers_dev:
            route["workers_dev"] = False
        if found.assets:
            route["assets"] = found.assets  # services/state/assets.py
        if found.hyperdrive:
            route["hyperdrive"] = list(found.hyperdrive)  # workerd/gateway/pooler.js
        if desk.on_probation(ns):
            route["probation"] = True
        return _json({"boot": view.boot, "epoch": epoch, "route": route})

    async def hosts(request: Request) -> Response:
        epoch = view.epoch
        claims = await view.claims()
        return _json({"boot": view.boot, "epoch": epoch, "claims": [
            {"pattern": c.pattern, "namespace": c.namespace, "worker": c.worker,
             "match": c.match} for c in claims]})

    async def resolve(request: Request) -> Response:
        await view.sync()
        target = resolve_target(_param(request, "host"), request.query_params.get("path", "/"),
                                domain, await view.host_table())
        if isinstance(target, NoTarget):
            return _json({"code": target.code, "message": target.message}, 404)
        found = await view.route(target.namespace, target.worker)
        if isinstance(found, Missing):
            return _json({"code": found.code, "message": found.message}, found.status)
        if not found.workers_dev and on_namespace_url(_param(request, "host"), domain):
            off = off_namespace_url(target.namespace, target.worker)
            return _json({"code": off.code, "message": off.message}, 404)
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
        if request.query_params.get("tail") == "1":
            # The gateway asks for the tailed isolate: its id says so (services/state/tails.py).
            body["id"] += TAIL_SUFFIX
            body["tail"] = True
        instance = request.query_params.get("instance")
        if instance:
            loads.record(instance, body["id"], ns, worker)
        return _json(body)

    async def assets_manifest(request: Request) -> Response:
        try:
            doc = await asset_source.manifest(_param(request, "ns"), _param(request, "worker"),
                                              _param(request, "version"))
        except AssetMissing as exc:
            return _json({"code": exc.code, "message": exc.message}, exc.status)
        return _json(doc)

    async def asset_blob(request: Request) -> Response:
        # The bytes of one asset of the namespace; `start`/`end` (inclusive) for a Range
        # the gateway already checked against the manifest's size.
        ns, digest = _param(request, "ns"), _param(request, "digest")
        if not is_digest(digest):
            return _json({"code": "bad_request", "message": "digest: not a sha256"}, 400)
        try:
            content = await asset_source.content(ns, digest)
        except AssetMissing as exc:
            return _json({"code": exc.code, "message": exc.message}, exc.status)
        start = request.query_params.get("start")
        end = request.query_params.get("end")
        if start is not None and end is not None and start.isdigit() and end.isdigit():
            content = content[int(start):int(end) + 1]
        return Response(content, media_type="application/octet-stream",
                        headers={"cache-control": "no-store"})

    async def stats(request: Request) -> Response:
        instance = _param(request, "instance")
        loaded = loads.loaded(instance)
        stale = 0
        for lid, (ns, worker) in loaded.items():
            current = await view.route(ns, worker)
            if isinstance(current, Missing) or \
                    tails.loader_id(ns, worker, current.loader_id) != lid:
                stale += 1
        return _json({"instance": instance, "loaded": len(loaded), "stale": stale})

    async def propagate(request: Request) -> Response:
        # The control API of another process, before it acknowledges a command
        # (services/state/leases.py). It makes the caller wait.
        epoch = await leases.propagate() if leases is not None else await view.sync()
        return _json({"boot": view.boot, "epoch": epoch})

    async def tailed(request: Request) -> Response:
        # A data service's full set of tailed workers; answered once gateways have it.
        try:
            doc = await request.json()
        except ValueError:
            doc = None
        source = doc.get("source") if isinstance(doc, dict) else None
        pairs = parse_pairs(doc.get("tailed")) if isinstance(doc, dict) else None
        if not isinstance(source, str) or not source or pairs is None:
            return _json({"code": "bad_request",
                          "message": "want {source, tailed: [[namespace, worker], ...]}"}, 400)
        epoch = await tails.replace(source, pairs)
        return _json({"boot": view.boot, "epoch": epoch, "tailed": len(tails.pairs)})

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def errors(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, BundleError)
        return _json({"code": exc.code, "message": exc.message}, exc.status)

    app = Starlette(routes=[
        HttpRoute("/healthz", healthz),
        HttpRoute("/route", route),
        HttpRoute("/hosts", hosts),
        HttpRoute("/resolve", resolve),
        HttpRoute("/bundle", bundle),
        HttpRoute("/assets/manifest", assets_manifest),
        HttpRoute("/assets/blob", asset_blob),
        HttpRoute("/stats", stats),
        HttpRoute("/metrics", metrics),
        HttpRoute("/propagate", propagate, methods=["POST"]),
        HttpRoute("/tails", tailed, methods=["POST"]),
        *incident_routes(view, desk, striker, registry=registry),
    ], exception_handlers={BundleError: errors})
    return InternalTokenGuard(SyncFastPath(app, view, desk, leases), internal_token)
