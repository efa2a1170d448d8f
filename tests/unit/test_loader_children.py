"""The gateway's config for tenants' dynamic Workers at scale (docs/loaders.md "Limits")."""

from __future__ import annotations

import pytest

from services.dataplane.config import (
    DEFAULT_LOADER_RESIDENT,
    GC_GLOBAL,
    GatewayOptions,
    render_gateway_config,
    workerd_dir,
)
from services.dataplane.gateway import RecyclePolicy
from services.dataplane.workerd_config import (
    Config,
    ConfigError,
    DurableObjectNamespaceBinding,
    EsModule,
    Worker,
    render_config,
)

pytestmark = pytest.mark.unit


def test_the_gc_name_is_one_name_in_the_config_the_gateway_and_the_shim() -> None:
    text = render_gateway_config(GatewayOptions("127.0.0.1:1"), "gw0")
    assert f'v8Flags = ["--expose-gc-as={GC_GLOBAL}"]' in text
    collect = (workerd_dir() / "gateway" / "collect.js").read_text()
    assert f'const GC_GLOBAL = "{GC_GLOBAL}";' in collect
    shim = (workerd_dir() / "tenant" / "shim.js").read_text()
    assert (f'Object.defineProperty(globalThis, "{GC_GLOBAL}", '
            "{ value: undefined, writable: false });") in shim


def test_children_are_kept_by_an_in_memory_object_under_the_configured_budget(
        monkeypatch: pytest.MonkeyPatch) -> None:
    text = render_gateway_config(GatewayOptions("127.0.0.1:1"), "gw0")
    assert '(name = "CHILDREN", durableObjectNamespace = "WdlChildren")' in text
    assert 'durableObjectNamespaces = [(className = "WdlChildren", ephemeralLocal = void)]' \
        in text
    assert "durableObjectStorage = (inMemory = void)" in text
    assert f'(name = "LOADER_RESIDENT", text = "{DEFAULT_LOADER_RESIDENT}")' in text
    monkeypatch.setenv("WDL_LOADER_RESIDENT", "40")
    assert GatewayOptions("127.0.0.1:1").loader_resident == 40
    # The supervisor's backstop stays above what a process keeps by itself.
    assert RecyclePolicy().max_children == 80
    children = (workerd_dir() / "gateway" / "children.js").read_text()
    assert f"export const DEFAULT_RESIDENT = {DEFAULT_LOADER_RESIDENT};" in children


def test_an_object_binding_must_name_a_class_of_the_worker() -> None:
    worker = Worker("w", [EsModule("m.js", "export default {}")], "2025-11-17",
                    bindings=[DurableObjectNamespaceBinding("X", "Nope")],
                    ephemeral_objects=["Yes"])
    with pytest.raises(ConfigError, match="not one of the worker's ephemeral_objects"):
        render_config(Config(services=[worker]))
