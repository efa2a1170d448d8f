"""wrangler durable_objects + migrations validation (cli/durable_objects.py) and the
durable_object binding kind in the version event."""

from __future__ import annotations

import re
from typing import Any

import pytest

from eventlog.bindings.durable_object import (
    DurableObjectConfigError,
    migrated_classes,
    read_durable_objects,
)
from eventlog.errors import InvalidEvent
from eventlog.events.workers import Binding, ModuleRef, WorkerVersionUploaded


def doc(bindings: list[dict[str, Any]], migrations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"name": "app", "durable_objects": {"bindings": bindings}, "migrations": migrations}


def test_migrations_apply_in_order() -> None:
    got = migrated_classes(doc([], [
        {"tag": "v1", "new_classes": ["Old"], "new_sqlite_classes": ["Lite"]},
        {"tag": "v2", "renamed_classes": [{"from": "Old", "to": "New"}]},
        {"tag": "v3", "deleted_classes": ["Lite"]},
    ]), "wrangler.toml")
    assert got == {"New": "kv"}


@pytest.mark.parametrize(("migrations", "message"), [
    ([{"new_classes": ["A"]}], "migrations[0].tag is required"),
    ([{"tag": "v1", "new_classes": ["A"]}, {"tag": "v1"}], "tag 'v1' appears twice"),
    ([{"tag": "v1", "new_classes": ["A"]}, {"tag": "v2", "new_sqlite_classes": ["A"]}],
     "class A already exists"),
    ([{"tag": "v1", "renamed_classes": [{"from": "X", "to": "Y"}]}], "class X does not exist"),
    ([{"tag": "v1", "deleted_classes": ["X"]}], "class X does not exist"),
    ([{"tag": "v1", "new_classes": ["not-a-class"]}], "is not a JavaScript class name"),
    ([{"tag": "v1", "transferred_classes": []}], "transferred_classes not supported"),
])
def test_bad_migrations_are_refused(migrations: list[dict[str, Any]], message: str) -> None:
    with pytest.raises(DurableObjectConfigError, match=re.escape(message)):
        migrated_classes(doc([], migrations), "wrangler.toml")


def test_bindings_become_durable_object_bindings() -> None:
    got = read_durable_objects(doc(
        [{"name": "A", "class_name": "Lite"},
         {"name": "B", "class_name": "Other", "script_name": "backend"},
         {"name": "C", "class_name": "Lite", "script_name": "app"}],
        [{"tag": "v1", "new_sqlite_classes": ["Lite"]}]), "wrangler.toml")
    assert got == [
        {"name": "A", "kind": "durable_object", "target": "Lite", "value": ""},
        {"name": "B", "kind": "durable_object", "target": "Other", "value": "backend"},
        {"name": "C", "kind": "durable_object", "target": "Lite", "value": ""},
    ]


@pytest.mark.parametrize(("binding", "message"), [
    ({"name": "A", "class_name": "Missing"}, "class Missing is not created by any migration"),
    ({"name": "A", "class_name": "Lite", "script_name": "other/worker"},
     "a worker of the same namespace"),
    ({"name": "A", "class_name": "Lite", "environment": "x"}, "environment not supported"),
    ({"class_name": "Lite"}, "name is required"),
])
def test_bad_bindings_are_refused(binding: dict[str, Any], message: str) -> None:
    with pytest.raises(DurableObjectConfigError, match=re.escape(message)):
        read_durable_objects(doc([binding], [{"tag": "v1", "new_sqlite_classes": ["Lite"]}]),
                             "wrangler.toml")


def _version(binding: Binding) -> WorkerVersionUploaded:
    return WorkerVersionUploaded(
        namespace="acme", worker="app", version_id="v1", bundle_sha256="0" * 64,
        bundle_size=1, modules=(ModuleRef(name="a.js", type="esm", sha256="0" * 64, size=1),),
        main_module="a.js", compatibility_date="2025-11-17", bindings=(binding,))


def test_the_version_event_checks_durable_object_bindings() -> None:
    _version(Binding(name="OBJ", kind="durable_object", target="Counter")).validate()
    _version(Binding(name="OBJ", kind="durable_object", target="Counter",
                     value="backend")).validate()
    with pytest.raises(InvalidEvent, match=r"bindings\[0\]\.target"):
        _version(Binding(name="OBJ", kind="durable_object", target="not a class")).validate()
    with pytest.raises(InvalidEvent, match=r"bindings\[0\]\.value"):
        _version(Binding(name="OBJ", kind="durable_object", target="Counter",
                         value="ns/worker")).validate()
    with pytest.raises(InvalidEvent, match="binding has no namespace"):
        _version(Binding(name="OBJ", kind="durable_object", target="Counter",
                         namespace="other")).validate()
