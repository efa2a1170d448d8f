"""Workers for Platforms, the pure parts: the wrangler key, the binding's checks, script
tags (event validation and the fold)."""

from __future__ import annotations

import pytest

from eventlog import events as ev
from eventlog.bindings import BindingConfigError, read_wrangler
from eventlog.bindings import dispatch_namespace as dn
from eventlog.errors import InvalidEvent
from projections import keys
from tests.factories import upload
from tests.unit.test_fold import Harness, accepted

pytestmark = pytest.mark.unit


def _binding(**kw: str) -> ev.Binding:
    return ev.Binding(**{"name": "D", "kind": "dispatch_namespace", **kw})


def test_the_wrangler_key_reads_as_cloudflare_documents_it() -> None:
    doc = {"dispatch_namespaces": [
        {"binding": "DISPATCHER", "namespace": "users",
         "outbound": {"service": "out", "parameters": ["customer", "plan"]}},
        {"binding": "PLAIN", "namespace": "more"}]}
    assert read_wrangler(doc, "w.toml") == [
        {"name": "DISPATCHER", "kind": "dispatch_namespace", "namespace": "users",
         "target": "out", "value": '["customer", "plan"]'},
        {"name": "PLAIN", "kind": "dispatch_namespace", "namespace": "more", "target": "",
         "value": ""}]


@pytest.mark.parametrize("entry, words", [
    ({"binding": "D"}, "`namespace` is required"),
    ({"binding": "D", "namespace": "u", "outbound": "out"}, "must be a table"),
    ({"binding": "D", "namespace": "u", "outbound": {"parameters": ["p"]}}, "`service`"),
    ({"binding": "D", "namespace": "u", "outbound": {"service": "o", "parameters": "p"}},
     "list of strings"),
    ({"binding": "D", "namespace": "u", "outbound": {"service": "o", "environment": "e"}},
     "not supported"),
    ({"binding": "D", "namespace": "u", "nope": 1}, "unknown field"),
    ({"binding": "D", "namespace": "u", "remote": True}, "`remote`"),
])
def test_wrong_entries_are_named(entry: dict[str, object], words: str) -> None:
    with pytest.raises(BindingConfigError, match=words):
        read_wrangler({"dispatch_namespaces": [entry]}, "w.toml")


@pytest.mark.parametrize("fields", [
    {"namespace": ""}, {"namespace": "../x"}, {"namespace": "u", "target": "A/B"},
    {"namespace": "u", "target": "o", "value": '["__WDL_X"]'},
    {"namespace": "u", "target": "o", "value": '["__proto__"]'},
    {"namespace": "u", "target": "o", "value": '["a", "a"]'},
    {"namespace": "u", "target": "o", "value": '"a"'},
    {"namespace": "u", "value": '["a"]'},  # parameters without an outbound
    {"namespace": "u", "entrypoint": "X"},
])
def test_the_binding_check_refuses(fields: dict[str, str]) -> None:
    spec = dn.SPEC
    with pytest.raises(InvalidEvent):
        spec.validate("bindings[0]", _binding(**fields))


def test_props_come_from_the_version_only() -> None:
    from eventlog.bindings import Scope
    props = dn.SPEC.props(Scope("plat", "dispatch", "v1"),  # type: ignore[misc]
                          {"namespace": "users", "target": "out", "value": '["c"]'})
    assert props == {"namespace": "plat", "worker": "dispatch", "dispatch_namespace": "users",
                     "outbound": "out", "parameters": ["c"]}


@pytest.mark.parametrize("tags", [tuple(f"t{i}" for i in range(9)), ("a,b",), ("",),
                                  ("x" * 65,), ("a", "a"), ("-a",), ("a&b",)])
def test_script_tags_are_checked(tags: tuple[str, ...]) -> None:
    with pytest.raises(InvalidEvent):
        ev.WorkerTagsSet(namespace="acme", worker="api", tags=tags).validate()


def test_tags_fold_onto_the_worker_record_and_go_with_a_purge() -> None:
    h = Harness()
    h.send(ev.NamespaceCreated(namespace="acme"))
    assert h.send(ev.WorkerTagsSet(namespace="acme", worker="api",
                                   tags=("a",))).code == "worker_missing"
    h.send(upload("acme", "api", "v1"))
    assert accepted(h.send(ev.WorkerTagsSet(namespace="acme", worker="api",
                                            tags=("cust-1", "plan:pro"))))
    record = h.get(keys.workers("acme"), "api")
    assert isinstance(record, dict) and record["tags"] == ["cust-1", "plan:pro"]
    assert accepted(h.send(ev.WorkerTagsSet(namespace="acme", worker="api", tags=())))
    record = h.get(keys.workers("acme"), "api")
    assert isinstance(record, dict) and "tags" not in record
    h.send(ev.WorkerTagsSet(namespace="acme", worker="api", tags=("x",)))
    h.send(ev.WorkerDeleted(namespace="acme", worker="api"))
    h.send(ev.WorkerPurged(namespace="acme", worker="api"))
    h.send(upload("acme", "api", "v2"))
    record = h.get(keys.workers("acme"), "api")
    assert isinstance(record, dict) and "tags" not in record
