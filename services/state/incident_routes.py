"""The state service's containment endpoints: announced entries, incidents, findings.

`/enter` and `/incident` are called by the gateway and its supervisor; with them one
could blame (and so hold back) another tenant's namespace, so like every route of the
state service they are behind the internal token (services/state/app.py).
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route as HttpRoute

from services.observability.labels import NamespaceLabels, WorkerLabels
from services.state.incidents import IncidentDesk, Target, parse_targets
from services.state.quarantine import Striker
from services.state.view import Missing, RouteView

log = logging.getLogger("wdl.state.incidents")


def _json(body: Any, status: int = 200) -> Response:
    return JSONResponse(body, status_code=status, headers={"cache-control": "no-store"})


def _error(status: int, code: str, message: str) -> Response:
    return _json({"code": code, "message": message}, status)


class IncidentMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.incidents = Counter("wdl_gateway_incidents_total",
                                 "workerd hangs and crashes reported by gateway supervisors",
                                 ["kind"], registry=registry)
        self.strikes = Counter("wdl_namespace_strikes_total",
                               "Strikes against a namespace (its only suspect in an incident)",
                               ["precise"], registry=registry)
        self.holds = Counter("wdl_namespace_holds_total",
                             "Namespaces held back by the watchdog's strikes",
                             ["namespace", "reason"], registry=registry)
        self.kills = Counter("wdl_worker_cpu_kills_total",
                             "workerd processes lost to a worker (blamed for a hang or crash): "
                             "its CPU-budget kills", ["namespace", "worker", "kind"],
                             registry=registry)
        self.workers = WorkerLabels()
        self.namespaces = NamespaceLabels()


def incident_routes(view: RouteView, desk: IncidentDesk, striker: Striker | None, *,
                    registry: CollectorRegistry) -> list[HttpRoute]:
    metrics = IncidentMetrics(registry)

    async def body_of(request: Request) -> dict[str, Any] | None:
        try:
            body = await request.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def resolve(target: Target) -> Target:
        if target.version is not None:
            return target
        found = await view.route(target.namespace, target.worker)
        if isinstance(found, Missing):
            return target
        return Target(target.namespace, target.worker, found.version)

    async def enter(request: Request) -> Response:
        body = await body_of(request)
        targets, _ = parse_targets([body.get("target")] if body else None, 1)
        token = body.get("token") if body else None
        if body is None or not targets or not isinstance(token, str) or not token:
            return _error(400, "bad_request", "expected {instance, token, target, done}")
        done = [t for t in body.get("done") or [] if isinstance(t, str)]
        desk.enter(str(body.get("instance") or ""), token, targets[0], done)
        return _json({"ok": True})

    async def incident(request: Request) -> Response:
        body = await body_of(request)
        if body is None or not isinstance(body.get("instance"), str) or \
                body.get("kind") not in ("hang", "crash"):
            return _error(400, "bad_request", "expected {instance, kind: hang|crash, detail}")
        kind = str(body["kind"])
        instance = str(body["instance"])
        detail = str(body.get("detail") or "")[:1000]
        metrics.incidents.labels(kind).inc()
        finding = await desk.incident(instance, kind, resolve)
        # Probation changed who runs gated: the routes of those namespaces are re-read.
        view.touch({*finding.probation, *finding.released,
                    *(t.namespace for t in finding.blamed)})
        log.warning("incident %s on %s: blamed %s, probation %s", kind, instance,
                    [t.label() for t in finding.blamed], list(finding.probation))
        strikes = []
        for target in finding.blamed:
            metrics.strikes.labels("yes" if finding.precise else "no").inc()
            metrics.kills.labels(*metrics.workers.labels(target.namespace, target.worker),
                                 kind).inc()
            if striker is None:
                continue
            result = await striker.strike(target, kind, precise=finding.precise,
                                          instance=instance, detail=detail)
            if result.held:
                metrics.holds.labels(metrics.namespaces.labels(target.namespace), kind).inc()
                view.touch({target.namespace})
            strikes.append({"namespace": target.namespace, "target": target.label(),
                            "accepted": result.accepted, "code": result.code,
                            "message": result.message, "held": result.held})
        return _json({**finding.to_json(), "strikes": strikes})

    async def findings(request: Request) -> Response:
        return _json({"findings": [f.to_json() for f in desk.findings],
                      "probation": desk.probation()})

    return [
        HttpRoute("/enter", enter, methods=["POST"]),
        HttpRoute("/incident", incident, methods=["POST"]),
        HttpRoute("/incidents", findings),
    ]
