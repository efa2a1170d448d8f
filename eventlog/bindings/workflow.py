"""`workflows`: a Workflow whose instances this worker's class runs (docs/workflows.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog import validation as v
from eventlog.bindings.spec import (
    BindingConfigError,
    BindingLike,
    BindingSpec,
    Scope,
    string,
    table_list,
)


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, wf in enumerate(table_list(doc, "workflows", config)):
        where = f"{config}: workflows[{i}]"
        if wf.get("script_name") and wf.get("script_name") != doc.get("name"):
            # Instances run on the version of the worker that declares the class.
            raise BindingConfigError(
                f"{where}: `script_name` (a workflow of another worker) is not supported by "
                "WDL; bind it from the worker that defines it")
        out.append({"name": string(wf, "binding", where), "kind": "workflow",
                    "target": string(wf, "name", where),
                    "entrypoint": string(wf, "class_name", where)})
    return out


def _check(field: str, b: BindingLike) -> None:
    # target: the workflow's name; entrypoint: the exported class that runs it.
    v.kv_name(f"{field}.target", b.target)
    v.entrypoint(f"{field}.entrypoint", b.entrypoint)


def _props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    # Instances are created on, and stay on, the version holding the binding.
    return {"namespace": scope.namespace, "worker": scope.worker, "version": scope.version,
            "workflow": b["target"], "class_name": b.get("entrypoint") or ""}


SPEC = BindingSpec(
    kind="workflow", label="workflow", check=_check, uses=frozenset({"target", "entrypoint"}),
    doc="target: the workflow's name; entrypoint: the class_name that runs it",
    wrangler_keys=("workflows",), parse=_parse, props=_props, entrypoint="WdlWorkflow",
    module="workflows", main_export="__WdlWorkflows")
