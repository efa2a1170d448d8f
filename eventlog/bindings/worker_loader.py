"""`worker_loaders`: the Dynamic Worker Loader API (docs/loaders.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog.bindings.spec import BindingSpec, Scope, no_check, string, table_list


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    # Just a name.
    return [{"name": string(loader, "binding", f"{config}: worker_loaders[{i}]"),
             "kind": "worker_loader"}
            for i, loader in enumerate(table_list(doc, "worker_loaders", config))]


def _props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    # Children are scoped by these props (workerd/gateway/loader.js).
    return {"namespace": scope.namespace, "worker": scope.worker, "version": scope.version}


SPEC = BindingSpec(
    kind="worker_loader", label="worker loader", check=no_check, doc="no target",
    wrangler_keys=("worker_loaders",), parse=_parse, props=_props, entrypoint="WdlLoader",
    module="loader")
