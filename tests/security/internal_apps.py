"""Every endpoint of the platform's internal servers, found from the running apps.

`endpoints(app)` follows an internal server's ASGI app through its wrappers (each
keeps the next as `.app`; a wrapper that serves paths itself lists them in
`fast_paths`) down to the Starlette app and lists every route, mounts included: a
route added tomorrow is walked tomorrow. The workerd side has no route table:
`workerd_paths()` reads every `/__wdl/...` literal from the gateway's and the DO
host's JavaScript.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from starlette.routing import BaseRoute, Mount, Route

ROOT = Path(__file__).resolve().parents[2]
_PARAM = re.compile(r"\{[^}]*\}")
_WDL_PATH = re.compile(r"/__wdl/[a-z][a-z/]*")


def _concrete(path: str) -> str:
    return _PARAM.sub("x", path)


def _routes(routes: Sequence[BaseRoute], prefix: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for route in routes:
        if isinstance(route, Mount):
            out += _routes(route.routes, prefix + route.path)
        elif isinstance(route, Route) or hasattr(route, "path_format"):
            # A plain-ASGI route (a hot path) says what it matches the same way.
            path = prefix + _concrete(getattr(route, "path_format"))  # noqa: B009
            methods = getattr(route, "methods", None) or {"GET"}
            out += [(m, path) for m in sorted(methods) if m != "HEAD"]
        else:
            raise AssertionError(f"unknown route kind {route!r}: give it path_format and "
                                 "methods")
    return out


def endpoints(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route served behind `app`."""
    found: list[tuple[str, str]] = []
    layer, seen = app, set()
    while layer is not None and id(layer) not in seen:
        seen.add(id(layer))
        for path in getattr(layer, "fast_paths", ()):
            found += [("GET", path), ("POST", path)]
        routes = getattr(layer, "routes", None)
        if routes is not None:
            return found + _routes(routes, "")
        layer = getattr(layer, "app", None)
    raise AssertionError(f"no Starlette routes behind {app!r}")


def workerd_paths() -> list[str]:
    sources = [*sorted((ROOT / "workerd" / "gateway").glob("*.js")),
               ROOT / "workerd" / "objects" / "objects.js"]
    paths = {m.rstrip("/") for p in sources for m in _WDL_PATH.findall(p.read_text())}
    return sorted(paths)
