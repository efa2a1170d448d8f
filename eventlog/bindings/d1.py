"""`d1_databases`: a D1 database of the worker's namespace (docs/d1.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog import validation as v
from eventlog.bindings.kv import resource_props
from eventlog.bindings.spec import BindingLike, BindingSpec, string, table_list


def read_databases(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    """`d1_databases`: binding, database_name, and the optional database_id (a uuid the
    database gets when deploy provisions it) and migrations_dir (default `migrations`)."""
    out: list[dict[str, str]] = []
    for i, db in enumerate(table_list(doc, "d1_databases", config)):
        where = f"{config}: d1_databases[{i}]"
        binding = string(db, "binding", where)
        out.append({"binding": binding,
                    "database_name": string(db, "database_name", where, required=False)
                    or binding.lower().replace("_", "-"),
                    "database_id": string(db, "database_id", where, required=False).lower(),
                    "migrations_dir": string(db, "migrations_dir", where, required=False)
                    or "migrations"})
    return out


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    return [{"name": d["binding"], "kind": "d1", "target": d["database_name"]}
            for d in read_databases(doc, config)]


def _check(field: str, b: BindingLike) -> None:
    v.d1_name(f"{field}.target", b.target)


SPEC = BindingSpec(
    kind="d1", label="D1 database", check=_check, uses=frozenset({"target"}),
    doc="target: the D1 database", wrangler_keys=("d1_databases",), parse=_parse,
    resource=True, props=resource_props, entrypoint="WdlD1", module="d1", in_objects=True)
