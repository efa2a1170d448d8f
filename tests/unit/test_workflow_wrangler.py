"""`workflows` in a wrangler config: bindings of the version, refusals before upload."""

from __future__ import annotations

import msgspec
import pytest

from cli.wrangler import ProjectError, read_bindings
from eventlog.errors import InvalidEvent
from eventlog.events.workers import Binding
from tests.factories import upload

pytestmark = pytest.mark.unit


def test_a_workflow_becomes_a_binding_of_its_class() -> None:
    doc = {"name": "flows", "workflows": [
        {"name": "orders", "binding": "ORDERS", "class_name": "OrderFlow"},
        {"name": "mine", "binding": "MINE", "class_name": "Mine", "script_name": "flows"}]}
    assert read_bindings(doc, "wrangler.toml") == [
        {"name": "ORDERS", "kind": "workflow", "target": "orders", "entrypoint": "OrderFlow"},
        {"name": "MINE", "kind": "workflow", "target": "mine", "entrypoint": "Mine"}]


@pytest.mark.parametrize(("entry", "message"), [
    ({"name": "o", "binding": "O", "class_name": "C", "script_name": "other"}, "script_name"),
    ({"name": "o", "binding": "O"}, "`class_name` is required"),
    ({"binding": "O", "class_name": "C"}, "`name` is required"),
])
def test_refusals_name_the_problem(entry: dict[str, str], message: str) -> None:
    with pytest.raises(ProjectError, match=message):
        read_bindings({"name": "flows", "workflows": [entry]}, "wrangler.toml")


def test_the_version_event_checks_workflow_bindings() -> None:
    good = Binding(name="ORDERS", kind="workflow", target="orders", entrypoint="OrderFlow")
    msgspec.structs.replace(upload("ns", "w", "v1"), bindings=(good,)).validate()
    for bad, field in [(Binding(name="O", kind="workflow", target="orders"), "entrypoint"),
                       (Binding(name="O", kind="workflow", target="", entrypoint="C"), "target"),
                       (Binding(name="O", kind="kv", target="cache", entrypoint="C"),
                        "has no entrypoint")]:
        with pytest.raises(InvalidEvent, match=field):
            msgspec.structs.replace(upload("ns", "w", "v1"), bindings=(bad,)).validate()
