"""`services`: another worker of this namespace, or of a namespace that granted it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog import validation as v
from eventlog.bindings.spec import BindingLike, BindingSpec, Scope, string, table_list


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, svc in enumerate(table_list(doc, "services", config)):
        where = f"{config}: services[{i}]"
        namespace, _, worker = string(svc, "service", where).rpartition("/")
        out.append({"name": string(svc, "binding", where), "kind": "service",
                    "target": worker, "namespace": namespace,
                    "entrypoint": string(svc, "entrypoint", where, required=False)})
    return out


def _check(field: str, b: BindingLike) -> None:
    v.name(f"{field}.target", b.target)
    if b.namespace:
        v.name(f"{field}.namespace", b.namespace)
    if b.entrypoint:
        v.entrypoint(f"{field}.entrypoint", b.entrypoint)


def _props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    # The caller's namespace is the platform's fact; the target's grant is checked by the
    # API at deploy and by the gateway on every call.
    return {"namespace": scope.namespace,
            "target_namespace": b.get("namespace") or scope.namespace,
            "worker": b["target"], "entrypoint": b.get("entrypoint") or ""}


SPEC = BindingSpec(
    kind="service", label="worker", check=_check,
    uses=frozenset({"target", "namespace", "entrypoint"}),
    doc="target: the worker; namespace: its namespace when another one (it must have "
        "granted this one); entrypoint: a named WorkerEntrypoint (default: the default "
        "export)",
    wrangler_keys=("services",), parse=_parse, cross_namespace=True, props=_props,
    entrypoint="WdlService",
    # WdlService resolves its target with the gateway's own loading code.
    module="service", gateway_module="gateway")
