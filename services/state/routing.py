"""Pure request routing: which namespace/worker a host + path names.

Mirrored by `workerd/gateway/routing.js` (the gateway does the same matching
on its cached host table); `tests/unit/test_gateway_routing.py` runs both on
one table of cases.

* `<ns>.<platform domain>/<worker>/<rest>` names worker `<worker>` of `<ns>`,
  which sees the path `/<rest>` (the `/<worker>` segment is stripped).
* Otherwise the host (+ path) is matched against claimed host patterns: an
  exact claim first, then the longest prefix claim. A claim with a worker
  routes there with the path unchanged; a claim without one routes like a
  namespace host (the first path segment names the worker and is stripped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

RESERVED_PREFIX = "/__wdl/"


@dataclass(frozen=True)
class HostClaim:
    pattern: str
    namespace: str
    worker: str | None
    match: Literal["exact", "prefix"]


@dataclass(frozen=True)
class Target:
    namespace: str
    worker: str
    path: str  # what the tenant sees (query string not included)


@dataclass(frozen=True)
class NoTarget:
    code: str  # unknown_host | no_worker
    message: str


def normalize_host(host: str) -> str:
    """Lowercase, without port and trailing dot."""
    h = host.strip().lower()
    if h.startswith("["):
        return h.split("]", 1)[0] + "]"
    h = h.rsplit(":", 1)[0] if h.count(":") == 1 else h
    return h.rstrip(".")


def _first_segment(path: str) -> tuple[str, str]:
    """`/w/rest` -> ("w", "/rest"); `/w` -> ("w", "/"); `/` -> ("", "/")."""
    rest = path[1:] if path.startswith("/") else path
    worker, slash, tail = rest.partition("/")
    return worker, "/" + tail if slash else "/"


def match_claim(claims: Mapping[str, HostClaim], host: str, path: str) -> HostClaim | None:
    """The exact claim for host or host+path, else the longest prefix claim."""
    full = host + path
    exact = claims.get(full) or claims.get(host)
    if exact is not None and exact.match == "exact":
        return exact
    best: HostClaim | None = None
    for claim in claims.values():
        if claim.match != "prefix" or not full.startswith(claim.pattern):
            continue
        # A bare-host prefix must end at the host boundary, not inside a longer name.
        if "/" not in claim.pattern and full != claim.pattern and \
                not full[len(claim.pattern):].startswith("/"):
            continue
        if best is None or len(claim.pattern) > len(best.pattern):
            best = claim
    return best


def resolve_target(host: str, path: str, domain: str,
                   claims: Mapping[str, HostClaim]) -> Target | NoTarget:
    host = normalize_host(host)
    path = path or "/"
    suffix = "." + domain
    if host.endswith(suffix):
        ns = host[: -len(suffix)]
        if not ns or "." in ns:
            return NoTarget("unknown_host", f"{host} is not <namespace>{suffix}")
        worker, rest = _first_segment(path)
        if not worker:
            return NoTarget("no_worker", f"name a worker: https://{host}/<worker>/")
        return Target(ns, worker, rest)
    claim = match_claim(claims, host, path)
    if claim is None:
        return NoTarget("unknown_host", f"no worker is routed at {host}{path}")
    if claim.worker is not None:
        return Target(claim.namespace, claim.worker, path)
    worker, rest = _first_segment(path)
    if not worker:
        return NoTarget("no_worker", f"name a worker: https://{host}/<worker>/")
    return Target(claim.namespace, worker, rest)
