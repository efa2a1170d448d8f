"""The registry of binding kinds: one spec per kind (docs/adding-a-binding.md).

Every layer asks here what a kind is; no other module names a kind's properties.
The order is the order wrangler config sections are read in.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from eventlog.bindings import (
    assets,
    d1,
    dispatch_namespace,
    durable_object,
    hyperdrive,
    kv,
    plain,
    queue,
    r2,
    ratelimit,
    service,
    version_metadata,
    worker_loader,
    workflow,
)
from eventlog.bindings.spec import (
    NO_VALUE,
    BindingConfigError,
    BindingLike,
    BindingSpec,
    Scope,
)

SPECS: Mapping[str, BindingSpec] = {s.kind: s for s in (
    kv.SPEC, r2.SPEC, d1.SPEC, service.SPEC, workflow.SPEC, queue.SPEC,
    durable_object.SPEC, worker_loader.SPEC, version_metadata.SPEC, ratelimit.SPEC,
    assets.SPEC, dispatch_namespace.SPEC, hyperdrive.SPEC, plain.SECRET, plain.JSON, plain.TEXT)}
KINDS: tuple[str, ...] = tuple(SPECS)
RESOURCE_KINDS: frozenset[str] = frozenset(k for k, s in SPECS.items() if s.resource)


def spec(kind: str) -> BindingSpec | None:
    return SPECS.get(kind)


def read_wrangler(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    """Every binding a wrangler config declares, in the control API's shape."""
    out: list[dict[str, str]] = []
    for s in SPECS.values():
        if s.parse is not None:
            out.extend(s.parse(doc, config))
    return out


def wrangler_keys() -> frozenset[str]:
    """The wrangler config keys the binding kinds read."""
    return frozenset(k for s in SPECS.values() for k in s.wrangler_keys)


__all__ = ["KINDS", "NO_VALUE", "RESOURCE_KINDS", "SPECS", "BindingConfigError",
           "BindingLike", "BindingSpec", "Scope", "read_wrangler", "spec", "wrangler_keys"]
