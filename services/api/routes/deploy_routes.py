"""A deploy's wrangler `routes`: judged before anything is written, claimed once promoted.

Each route becomes a host claim of the namespace for the deployed worker
(services/wrangler_routes.py translates the pattern; the host then goes through
`hosts.canonical`, the same reserved names, platform domain and ownership rules as
`wdl hosts claim`). A route whose host another namespace holds is 409 `host_claimed`,
one this namespace routes to another of its workers 409 `route_in_use`, one with no
claim form 400 `invalid_route`: all before the version is stored, so a refused deploy
changes nothing. The claims are appended after the promote (the fold stays the arbiter
of a race: a claim it refuses is reported as a refused deploy).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from eventlog.events import HostClaimed
from eventlog.hostnames import split_pattern
from services.api.auth import Principal
from services.api.commands import build, idempotency_key, submit
from services.api.context import ApiContext
from services.api.errors import ApiError
from services.api.routes.hosts import canonical, owners
from services.wrangler_routes import MAX_ROUTES, RouteError, translate


@dataclass(frozen=True)
class PlannedRoute:
    route: str  # as the config wrote it
    pattern: str  # canonical claim pattern
    match: str
    held: bool  # the namespace already claims it for this worker


async def plan_routes(ctx: ApiContext, ns: str, worker: str,
                      routes: list[Any]) -> list[PlannedRoute]:
    """Translate and judge every route; raise ApiError for the first that cannot be
    claimed. Nothing is written."""
    if len(routes) > MAX_ROUTES:
        raise ApiError(400, "invalid_route", f"at most {MAX_ROUTES} routes per worker",
                       field="routes")
    table = await ctx.reader.hosts()
    planned: dict[str, PlannedRoute] = {}
    for i, entry in enumerate(routes):
        try:
            claim = translate(entry, f"routes[{i}]")
        except RouteError as exc:
            raise ApiError(400, "invalid_route", str(exc), field=f"routes[{i}]") from None
        try:
            pattern = canonical(ctx, claim.pattern)
        except ApiError as exc:
            raise ApiError(exc.status, exc.code, f"routes[{i}] {claim.route!r}: {exc.message}",
                           field=f"routes[{i}]") from None
        host, _ = split_pattern(pattern)
        if await owners(ctx, host) - {ns}:
            raise ApiError(409, "host_claimed", f"routes[{i}] {claim.route!r}: {host} belongs "
                           "to another namespace, with every path under it",
                           field=f"routes[{i}]")
        current = table.get(pattern)
        held = False
        if current is not None and current.get("namespace") == ns:
            if current.get("worker") != worker:
                raise ApiError(409, "route_in_use", f"routes[{i}] {claim.route!r}: {pattern} "
                               f"already routes to {current.get('worker') or 'the namespace'}"
                               f" in {ns}; release it first (`wdl hosts release {pattern}`)",
                               field=f"routes[{i}]")
            held = current.get("match") == claim.match
        previous = planned.get(pattern)
        if previous is not None and previous.match != claim.match:
            raise ApiError(400, "invalid_route", f"routes[{i}] {claim.route!r} and "
                           f"{previous.route!r} claim {pattern} two ways", field="routes")
        planned[pattern] = PlannedRoute(claim.route, pattern, claim.match, held)
    fresh = sum(1 for p in planned.values() if not p.held)
    if fresh:
        claims = sum(1 for doc in table.values() if doc.get("namespace") == ns)
        ctx.quotas.check("hosts", claims + fresh - 1, f"namespace {ns}",
                         way_out="release a host claim first")
    return list(planned.values())


async def claim_routes(ctx: ApiContext, principal: Principal, ns: str, worker: str,
                       planned: list[PlannedRoute], idem: str | None) -> list[dict[str, Any]]:
    """Append the claims not yet held; what each route is now."""
    out: list[dict[str, Any]] = []
    for route in planned:
        if not route.held:
            async with ctx.quota_locks.hold("hosts", ns):
                env = build(ctx, principal, HostClaimed(pattern=route.pattern, namespace=ns,
                                                        match=route.match,  # type: ignore[arg-type]
                                                        worker=worker),
                            idempotency=idempotency_key(principal, idem,
                                                        ":route:" + hashlib.sha256(
                                                            route.pattern.encode()).hexdigest()[:16]))
                (await submit(ctx, env)).require_accepted(route=route.route)
        owner = await ctx.reader.host_owner(split_pattern(route.pattern)[0])
        verified = bool(owner and owner.get("verified") and owner.get("namespace") == ns)
        out.append({"route": route.route, "pattern": route.pattern, "match": route.match,
                    "routes_now": verified or not ctx.hosts.verification})
    return out
