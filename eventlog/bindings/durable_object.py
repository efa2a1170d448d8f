"""wrangler's `durable_objects.bindings` and `migrations`, validated at deploy.

A binding to a class of this worker (no `script_name`, or this worker's name)
needs a class that the migrations create (`new_classes`, `new_sqlite_classes`,
the `to` of `renamed_classes`) and do not delete, as Cloudflare refuses such a
deploy too. `script_name` names another worker of the same namespace (never
another namespace: the platform sets the namespace, docs/durable-objects.md).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from eventlog import validation as v
from eventlog.bindings.spec import BindingConfigError, BindingLike, BindingSpec, Scope

CLASS_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]{0,127}$")
_MIGRATION_KEYS = {"tag", "new_classes", "new_sqlite_classes", "renamed_classes",
                   "deleted_classes"}


class DurableObjectConfigError(BindingConfigError):
    pass


def _class(value: object, where: str) -> str:
    if not isinstance(value, str) or CLASS_RE.fullmatch(value) is None:
        raise DurableObjectConfigError(f"{where}: {value!r} is not a JavaScript class name")
    return value


def _names(m: dict[str, Any], key: str, where: str) -> list[str]:
    items = m.get(key, [])
    if not isinstance(items, list):
        raise DurableObjectConfigError(f"{where}.{key} must be a list of class names")
    return [_class(c, f"{where}.{key}[{i}]") for i, c in enumerate(items)]


def migrated_classes(doc: Mapping[str, Any], config: str) -> dict[str, str]:
    """Class -> "sqlite" | "kv" after applying every migration in order."""
    migrations = doc.get("migrations", [])
    if not isinstance(migrations, list):
        raise DurableObjectConfigError(f"{config}: `migrations` must be a list of tables")
    classes: dict[str, str] = {}
    tags: set[str] = set()
    for i, m in enumerate(migrations):
        where = f"{config}: migrations[{i}]"
        if not isinstance(m, dict):
            raise DurableObjectConfigError(f"{where} must be a table")
        unknown = sorted(set(m) - _MIGRATION_KEYS)
        if unknown:
            raise DurableObjectConfigError(f"{where}: {', '.join(unknown)} not supported by WDL")
        tag = m.get("tag")
        if not isinstance(tag, str) or not tag:
            raise DurableObjectConfigError(f"{where}.tag is required")
        if tag in tags:
            raise DurableObjectConfigError(f"{where}: tag {tag!r} appears twice")
        tags.add(tag)
        for key, storage in (("new_classes", "kv"), ("new_sqlite_classes", "sqlite")):
            for name in _names(m, key, where):
                if name in classes:
                    raise DurableObjectConfigError(
                        f"{where}.{key}: class {name} already exists")
                classes[name] = storage
        renamed = m.get("renamed_classes", [])
        if not isinstance(renamed, list):
            raise DurableObjectConfigError(f"{where}.renamed_classes must be a list")
        for j, r in enumerate(renamed):
            at = f"{where}.renamed_classes[{j}]"
            if not isinstance(r, dict):
                raise DurableObjectConfigError(f"{at} must be a table with from and to")
            src, dst = _class(r.get("from"), f"{at}.from"), _class(r.get("to"), f"{at}.to")
            if src not in classes:
                raise DurableObjectConfigError(f"{at}: class {src} does not exist")
            if dst in classes:
                raise DurableObjectConfigError(f"{at}: class {dst} already exists")
            classes[dst] = classes.pop(src)
        for name in _names(m, "deleted_classes", where):
            if name not in classes:
                raise DurableObjectConfigError(
                    f"{where}.deleted_classes: class {name} does not exist")
            del classes[name]
    return classes


def read_durable_objects(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    """The control API's `durable_object` bindings (target: class, value: script)."""
    classes = migrated_classes(doc, config)
    section = doc.get("durable_objects", {})
    if not isinstance(section, dict):
        raise DurableObjectConfigError(f"{config}: `durable_objects` must be a table")
    bindings = section.get("bindings", [])
    if not isinstance(bindings, list):
        raise DurableObjectConfigError(f"{config}: durable_objects.bindings must be a list")
    own = doc.get("name")
    out: list[dict[str, str]] = []
    for i, b in enumerate(bindings):
        where = f"{config}: durable_objects.bindings[{i}]"
        if not isinstance(b, dict):
            raise DurableObjectConfigError(f"{where} must be a table")
        unknown = sorted(set(b) - {"name", "class_name", "script_name"})
        if unknown:
            raise DurableObjectConfigError(f"{where}: {', '.join(unknown)} not supported by WDL")
        name = b.get("name")
        if not isinstance(name, str) or not name:
            raise DurableObjectConfigError(f"{where}.name is required")
        cls = _class(b.get("class_name"), f"{where}.class_name")
        script = b.get("script_name") or ""
        if not isinstance(script, str) or "/" in script:
            raise DurableObjectConfigError(
                f"{where}.script_name: a worker of the same namespace (no namespace/ part)")
        if script == own:
            script = ""
        if not script and cls not in classes:
            raise DurableObjectConfigError(
                f"{where}: class {cls} is not created by any migration (add it to "
                "new_sqlite_classes of a [[migrations]] entry)")
        out.append({"name": name, "kind": "durable_object", "target": cls, "value": script})
    return out


def _check(field: str, b: BindingLike) -> None:
    # target: the class; value: the worker of this namespace that exports it ("" for
    # this one).
    v.entrypoint(f"{field}.target", b.target)
    if b.value:
        v.name(f"{field}.value", b.value)


def _props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    # Objects of `class_name` of `script` (a worker of this namespace, this one by
    # default); the namespace is the caller's, always (docs/durable-objects.md).
    return {"namespace": scope.namespace, "worker": scope.worker,
            "script": b.get("value") or scope.worker, "class_name": b["target"]}


SPEC = BindingSpec(
    kind="durable_object", label="Durable Object class", check=_check,
    uses=frozenset({"target", "value"}),
    doc="target: the class; value: the worker of this namespace exporting it (default: "
        "this one)",
    wrangler_keys=("durable_objects", "migrations"), parse=read_durable_objects,
    props=_props, entrypoint="WdlDo", module="do", in_objects=True, info=True)
