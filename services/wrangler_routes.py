"""Wrangler `routes` / `route` entries -> host claims (docs/hosts.md, docs/compatibility.md).

A route pattern is a tenant string. This is the only way one becomes a claim pattern:
an allow-list of Cloudflare's pattern shapes, translated to the claim table's
`exact`/`prefix` matching; anything else is refused with the reason. The host part then
goes through the same canonical form, reserved names and ownership rules as
`wdl hosts claim` (services/api/routes/hosts.py), so a route can take nothing a claim
could not.

Cloudflare's matching (developers.cloudflare.com/workers/configuration/routing/routes/):
`host/*` covers every path of the host; `host/path*` every path starting with `/path`;
`host/path` that path only, and a bare `host` its root only; `custom_domain = true`
names a bare host and covers all of it. Wildcard hosts (`*.example.com`), infix
wildcards, query strings, schemes and ports have no claim form and are refused.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

MAX_ROUTES = 100
# What a claim's path may hold (eventlog/validation.PATH_RE) minus the wildcard, which
# only ends a pattern.
_PATH_RE = re.compile(r"/[A-Za-z0-9._~!$&'()+,;=:@%/-]*")
_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class RouteError(ValueError):
    def __init__(self, where: str, message: str) -> None:
        super().__init__(f"{where}: {message}")
        self.where = where


@dataclass(frozen=True)
class RouteClaim:
    pattern: str  # host[/path], as typed (the API canonicalizes the host)
    match: Literal["exact", "prefix"]
    route: str  # the wrangler pattern it came from


def _entry(entry: object, where: str) -> tuple[str, bool, str | None]:
    """(pattern, custom_domain, zone_name) of one `routes` item."""
    if isinstance(entry, str):
        return entry, False, None
    if not isinstance(entry, dict):
        raise RouteError(where, "a route is a pattern string or a table with `pattern`")
    unknown = sorted(set(entry) - {"pattern", "zone_name", "zone_id", "custom_domain"})
    if unknown:
        raise RouteError(where, f"`{unknown[0]}` is not a route field (pattern, zone_name, "
                                "zone_id, custom_domain)")
    pattern, custom, zone = (entry.get("pattern"), entry.get("custom_domain", False),
                             entry.get("zone_name"))
    if not isinstance(pattern, str):
        raise RouteError(where, "`pattern` is required and must be a string")
    if not isinstance(custom, bool):
        raise RouteError(where, "`custom_domain` must be true or false")
    if zone is not None and (not isinstance(zone, str) or not zone):
        raise RouteError(where, "`zone_name` must be a non-empty string")
    if entry.get("zone_id") is not None and not isinstance(entry.get("zone_id"), str):
        raise RouteError(where, "`zone_id` must be a string")
    return pattern, custom, zone


def translate(entry: object, where: str = "routes[0]") -> RouteClaim:
    """One wrangler route -> the claim it makes, or RouteError saying why it has none."""
    pattern, custom, zone = _entry(entry, where)
    shown = repr(pattern) if len(pattern) <= 80 else "the pattern"
    if not pattern or pattern != pattern.strip() or not pattern.isprintable():
        raise RouteError(where, f"{shown} is not a route pattern (empty, blank or with "
                                "control characters)")
    if _SCHEME_RE.match(pattern):
        raise RouteError(where, f"{shown} names a scheme: a route pattern is host[/path] "
                                "and covers http and https")
    if "?" in pattern or "#" in pattern:
        raise RouteError(where, f"{shown}: a route pattern holds no query or fragment")
    host, slash, path = pattern.partition("/")
    path = slash + path
    if "*" in host:
        raise RouteError(where, f"{shown}: wildcard hosts are not served by WDL; a route "
                                "names one host (claim each host you serve)")
    if ":" in host:
        raise RouteError(where, f"{shown}: a route pattern names no port (it covers every "
                                "port)")
    if zone is not None and host.lower().rstrip(".") != zone.lower() and not \
            host.lower().rstrip(".").endswith("." + zone.lower()):
        raise RouteError(where, f"{shown} is not in zone {zone!r}")
    if custom:
        if path:
            raise RouteError(where, f"{shown}: a custom domain is a host, without a path "
                                    "or wildcard")
        return RouteClaim(host, "prefix", pattern)
    prefix = path.endswith("*")
    bare = path[:-1] if prefix else path
    if "*" in bare:
        raise RouteError(where, f"{shown}: a wildcard may only end the path")
    if bare and (_PATH_RE.fullmatch(bare) is None or not bare.isascii()):
        raise RouteError(where, f"{shown}: {bare!r} is not a URL path (ASCII, percent-encode "
                                "the rest)")
    segments = bare.split("/")
    if any(s in (".", "..") for s in segments[1:]) or "//" in bare:
        raise RouteError(where, f"{shown}: a path with `.`, `..` or an empty segment never "
                                "matches a request (URLs are normalized)")
    if prefix:
        return RouteClaim(host if bare in ("", "/") else host + bare, "prefix", pattern)
    return RouteClaim(host + (bare or "/"), "exact", pattern)


def read_routes(doc: dict[str, Any], config: str) -> list[RouteClaim]:
    """`route` (one) or `routes` (a list) of a wrangler config, translated."""
    if doc.get("route") is not None and doc.get("routes") is not None:
        raise RouteError(config, "`route` and `routes` are exclusive: use one")
    if doc.get("route") is not None:
        items: list[object] = [doc["route"]]
        label = "route"
    else:
        raw = doc.get("routes") or []
        if not isinstance(raw, list):
            raise RouteError(f"{config}: routes", "must be a list of patterns or tables")
        items, label = raw, "routes"
    if len(items) > MAX_ROUTES:
        raise RouteError(f"{config}: {label}", f"at most {MAX_ROUTES} routes per worker")
    return [translate(item, f"{config}: {label}" + ("" if label == "route" else f"[{i}]"))
            for i, item in enumerate(items)]
