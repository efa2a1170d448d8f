"""`r2_buckets`: an R2 bucket of the worker's namespace (docs/r2.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog import validation as v
from eventlog.bindings.kv import resource_props
from eventlog.bindings.spec import BindingLike, BindingSpec, string, table_list


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for i, r2 in enumerate(table_list(doc, "r2_buckets", config)):
        where = f"{config}: r2_buckets[{i}]"
        out.append({"name": string(r2, "binding", where), "kind": "r2",
                    "target": string(r2, "bucket_name", where)})
    return out


def _check(field: str, b: BindingLike) -> None:
    v.bucket_name(f"{field}.target", b.target)


SPEC = BindingSpec(
    kind="r2", label="R2 bucket", check=_check, uses=frozenset({"target"}),
    doc="target: the bucket", wrangler_keys=("r2_buckets",), parse=_parse, resource=True,
    props=resource_props, entrypoint="WdlR2", module="r2", in_objects=True)
