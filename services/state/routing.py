"""Pure request routing: which namespace/worker a host + path names.

Mirrored by `workerd/gateway/routing.js` (the gateway does the same matching
on its cached host table); `tests/unit/test_gateway_routing.py` runs both on
one table of cases.

* `<ns>.<platform domain>/<worker>/<rest>` names worker `<worker>` of `<ns>`,
  which sees the path `/<rest>` (the `/<worker>` segment is stripped). The
  platform domain itself names no namespace.
* IP literals (any spelling), local and single-label names belong to no tenant
  (eventlog/hostnames.py): never routed through a claim, whatever the table holds.
* Otherwise the host's owner decides before any path: only the owner's claims
  apply (docs/hosts.md). Among them the most specific wins: an exact claim of
  host+path, then the longest prefix claim with a path, then the claim of the bare
  host (exact or prefix: either covers every path of the host). A claim with a
  worker routes there with the path unchanged; a claim without one routes like a
  namespace host (the first path segment names the worker and is stripped).

The fold gives a host one namespace. A table in which a host's claims name several
(a projection written before host ownership, docs/hosts.md) routes the host by the
namespace holding its bare host, and not at all without one: it fails closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from eventlog.hostnames import reserved_reason, split_pattern

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


@dataclass
class HostEntry:
    """The claims of one host that route: its owner's, most specific first."""

    owner: str | None  # None: the table names several namespaces and none holds the host
    bare: HostClaim | None = None
    exact: dict[str, HostClaim] = field(default_factory=dict)  # path -> claim
    prefixes: list[HostClaim] = field(default_factory=list)  # with a path, longest first


def index_claims(claims: Iterable[HostClaim]) -> dict[str, HostEntry]:
    """The host table routing reads: host -> its owner's claims."""
    by_host: dict[str, list[HostClaim]] = {}
    for claim in claims:
        by_host.setdefault(split_pattern(claim.pattern)[0], []).append(claim)
    table: dict[str, HostEntry] = {}
    for host, group in by_host.items():
        namespaces = {c.namespace for c in group}
        bare = [c for c in group if c.pattern == host]
        owner = group[0].namespace if len(namespaces) == 1 else (
            bare[0].namespace if bare else None)
        entry = HostEntry(owner)
        for claim in sorted(group, key=lambda c: c.pattern):
            if claim.namespace != owner:
                continue
            _, path = split_pattern(claim.pattern)
            if not path:
                entry.bare = claim
            elif claim.match == "exact":
                entry.exact[path] = claim
            else:
                entry.prefixes.append(claim)
        entry.prefixes.sort(key=lambda c: -len(c.pattern))
        table[host] = entry
    return table


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


def on_namespace_url(host: str, domain: str) -> bool:
    """Whether `host` is a namespace host `<ns>.<domain>` (where `workers_dev = false`
    takes a worker off)."""
    return normalize_host(host).endswith("." + domain)


def off_namespace_url(namespace: str, worker: str) -> NoTarget:
    """A worker deployed with `workers_dev = false`, asked for at its namespace URL."""
    return NoTarget("workers_dev_disabled",
                    f"worker {worker!r} of namespace {namespace!r} is not served on the "
                    "namespace URL (workers_dev = false): it is reached at its routes")


def match_claim(entry: HostEntry, path: str) -> HostClaim | None:
    """The owner's most specific claim covering `path`."""
    exact = entry.exact.get(path)
    if exact is not None:
        return exact
    for claim in entry.prefixes:
        if path.startswith(split_pattern(claim.pattern)[1]):
            return claim
    return entry.bare


def resolve_target(host: str, path: str, domain: str,
                   table: dict[str, HostEntry]) -> Target | NoTarget:
    host = normalize_host(host)
    path = path or "/"
    suffix = "." + domain
    if host == domain:
        return NoTarget("unknown_host", f"{host} is the platform domain: name a namespace "
                                        f"(https://<namespace>{suffix}/<worker>/)")
    if host.endswith(suffix):
        ns = host[: -len(suffix)]
        if not ns or "." in ns:
            return NoTarget("unknown_host", f"{host} is not <namespace>{suffix}")
        worker, rest = _first_segment(path)
        if not worker:
            return NoTarget("no_worker", f"name a worker: https://{host}/<worker>/")
        return Target(ns, worker, rest)
    reason = reserved_reason(host)
    if reason is not None:
        return NoTarget("unknown_host", f"{host} is {reason}: no worker is routed at it")
    entry = table.get(host)
    claim = None if entry is None else match_claim(entry, path)
    if claim is None:
        return NoTarget("unknown_host", f"no worker is routed at {host}{path}")
    if claim.worker is not None:
        return Target(claim.namespace, claim.worker, path)
    worker, rest = _first_segment(path)
    if not worker:
        return NoTarget("no_worker", f"name a worker: https://{host}/<worker>/")
    return Target(claim.namespace, worker, rest)
