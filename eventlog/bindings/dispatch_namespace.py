"""`dispatch_namespaces`: Workers for Platforms' dynamic dispatch (docs/platforms.md).

A dispatch namespace is a WDL namespace of user workers; the dispatcher binds it only if
that namespace granted the dispatcher's namespace every worker (`*`): the API checks the
grant at deploy, the gateway on every call. `outbound.service` names a worker of the
dispatcher's own namespace that receives every fetch() of the dispatched user workers,
with the dispatcher's per-call `outbound` values for the declared `parameters` in env.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, cast

from eventlog import validation as v
from eventlog.bindings.spec import (
    BindingConfigError,
    BindingLike,
    BindingSpec,
    Scope,
    string,
    table_list,
)
from eventlog.errors import InvalidEvent

# Parameters are env names of the outbound worker: a bound list keeps its env small.
MAX_PARAMETERS = 32


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, d in enumerate(table_list(doc, "dispatch_namespaces", config)):
        where = f"{config}: dispatch_namespaces[{i}]"
        unknown = set(d) - {"binding", "namespace", "outbound", "experimental_remote", "remote"}
        if unknown:
            raise BindingConfigError(f"{where}: unknown field(s) {sorted(unknown)}")
        if d.get("remote") or d.get("experimental_remote"):
            raise BindingConfigError(f"{where}: `remote` (a binding proxied to Cloudflare) is "
                                     "not supported by WDL: the dispatch namespace is served "
                                     "locally")
        outbound = d.get("outbound")
        service, params = "", cast(list[str], [])
        if outbound is not None:
            if not isinstance(outbound, dict):
                raise BindingConfigError(f"{where}: `outbound` must be a table")
            extra = set(outbound) - {"service", "parameters", "environment"}
            if extra:
                raise BindingConfigError(f"{where}.outbound: unknown field(s) {sorted(extra)}")
            if outbound.get("environment"):
                raise BindingConfigError(f"{where}.outbound: `environment` (a legacy service "
                                         "environment) is not supported by WDL")
            service = string(outbound, "service", f"{where}.outbound")
            params = outbound.get("parameters") or []
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise BindingConfigError(f"{where}.outbound: `parameters` must be a list of "
                                         "strings")
        out.append({"name": string(d, "binding", where), "kind": "dispatch_namespace",
                    "namespace": string(d, "namespace", where), "target": service,
                    "value": json.dumps(params) if params else ""})
    return out


def parameters(value: str) -> list[str]:
    """The declared outbound parameter names a binding's `value` carries."""
    return list(json.loads(value)) if value else []


def _check(field: str, b: BindingLike) -> None:
    if not b.namespace:
        raise InvalidEvent(f"{field}.namespace", "a dispatch namespace binding names its "
                                                  "dispatch namespace")
    v.name(f"{field}.namespace", b.namespace)
    if b.target:
        v.name(f"{field}.target", b.target)
    if not b.value:
        return
    try:
        params = json.loads(b.value)
    except ValueError:
        raise InvalidEvent(f"{field}.value", "outbound parameters: a JSON list of names") \
            from None
    if not isinstance(params, list) or not params or len(params) > MAX_PARAMETERS:
        raise InvalidEvent(f"{field}.value", f"outbound parameters: a JSON list of 1 to "
                                             f"{MAX_PARAMETERS} names")
    if not b.target:
        raise InvalidEvent(f"{field}.value", "outbound parameters need an outbound service")
    for i, p in enumerate(params):
        v.secret_name(f"{field}.value[{i}]", p)
    if len(set(params)) != len(params):
        raise InvalidEvent(f"{field}.value", "outbound parameters are named twice")


def _props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    # Set here only: the dispatcher's namespace is the platform's fact, the dispatch
    # namespace and the outbound come from the accepted version.
    return {"namespace": scope.namespace, "worker": scope.worker,
            "dispatch_namespace": b["namespace"],
            "outbound": b.get("target") or "",
            "parameters": parameters(b.get("value") or "")}


SPEC = BindingSpec(
    kind="dispatch_namespace", label="dispatch namespace", check=_check,
    uses=frozenset({"namespace", "target", "value"}),
    doc="namespace: the dispatch namespace (it must have granted this one every worker, "
        "`*`); target: the outbound worker of this namespace (optional); value: a JSON list "
        "of the outbound parameter names",
    wrangler_keys=("dispatch_namespaces",), parse=_parse, cross_namespace=True,
    whole_namespace=True, props=_props, entrypoint="WdlDispatch", module="dispatch")
