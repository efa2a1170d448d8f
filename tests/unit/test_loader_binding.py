"""The `worker_loader` binding: wrangler's `worker_loaders`, the version event, the
props the state service gives the gateway (docs/loaders.md)."""

from __future__ import annotations

import msgspec
import pytest

from cli.wrangler import ProjectError, read_bindings
from eventlog import Envelope
from eventlog.errors import InvalidEvent
from eventlog.events.workers import Binding
from services.state.bundles import _env
from tests.eventlog_samples import upload

pytestmark = pytest.mark.unit


def test_wrangler_worker_loaders_become_bindings() -> None:
    doc = {"worker_loaders": [{"binding": "LOADER"}, {"binding": "OTHER"}]}
    assert read_bindings(doc, "wrangler.toml") == [
        {"name": "LOADER", "kind": "worker_loader"}, {"name": "OTHER", "kind": "worker_loader"}]
    with pytest.raises(ProjectError, match=r"worker_loaders\[0\].*binding"):
        read_bindings({"worker_loaders": [{}]}, "wrangler.toml")
    with pytest.raises(ProjectError, match="list of tables"):
        read_bindings({"worker_loaders": "LOADER"}, "wrangler.toml")


def test_the_version_event_takes_a_loader_binding_without_target() -> None:
    ok = msgspec.structs.replace(upload(), bindings=(Binding(name="LOADER",
                                                             kind="worker_loader"),))
    Envelope.new(ok, actor="t")
    for bad in (Binding(name="LOADER", kind="worker_loader", target="x"),
                Binding(name="LOADER", kind="worker_loader", entrypoint="E")):
        with pytest.raises(InvalidEvent) as info:
            Envelope.new(msgspec.structs.replace(upload(), bindings=(bad,)), actor="t")
        assert info.value.field.startswith("bindings[0]")


def test_loader_props_are_the_platforms() -> None:
    env, platform = _env("acme", "api", "v7", {"bindings": [
        {"name": "LOADER", "kind": "worker_loader", "target": "", "value": ""}]}, {})
    assert env == {}
    assert platform == [{"name": "LOADER", "kind": "worker_loader",
                         "props": {"namespace": "acme", "worker": "api", "version": "v7"}}]
