"""`kv_namespaces`: a KV namespace of the worker's namespace (docs/kv.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog import validation as v
from eventlog.bindings.spec import BindingLike, BindingSpec, Scope, string, table_list


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, kv in enumerate(table_list(doc, "kv_namespaces", config)):
        where = f"{config}: kv_namespaces[{i}]"
        binding = string(kv, "binding", where)
        # The id names the platform KV namespace; without one, the binding name does.
        out.append({"name": binding, "kind": "kv",
                    "target": string(kv, "id", where, required=False) or binding.lower()})
    return out


def _check(field: str, b: BindingLike) -> None:
    v.kv_name(f"{field}.target", b.target)


def resource_props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    """Props of the resource-backed kinds whose entrypoint takes the resource by name."""
    return {"namespace": scope.namespace, "resource": b["target"], "worker": scope.worker,
            "version": scope.version}


SPEC = BindingSpec(
    kind="kv", label="KV namespace", check=_check, uses=frozenset({"target"}),
    doc="target: the KV namespace", wrangler_keys=("kv_namespaces",), parse=_parse,
    resource=True, props=resource_props, entrypoint="WdlKv", module="kv", in_objects=True)
