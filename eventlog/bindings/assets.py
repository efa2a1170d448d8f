"""`assets.binding`: `env.<binding>` of a version's Static Assets (docs/compatibility.md).

`assets.binding` is read here; the rest of `assets` by `cli/assets.py`. The version
event checks that the binding is exactly the one its `assets.binding` names
(eventlog/events/workers.py), so it always reaches the version's own files. `fetch()` answers from
that very version's manifest (workerd/gateway/assets.js).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from eventlog.bindings.spec import (
    BindingConfigError,
    BindingLike,
    BindingSpec,
    Scope,
    no_check,
)
from eventlog.errors import InvalidEvent


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    # The rest of `assets` (its directory, handling, rules) is cli/assets.py's.
    assets = doc.get("assets")
    name = assets.get("binding") if isinstance(assets, Mapping) else None
    if name is None:
        return []
    if not isinstance(name, str) or not name:
        raise BindingConfigError(f"{config}: `assets.binding` must be a non-empty string")
    return [{"name": name, "kind": SPEC.kind}]


def _props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    return {"namespace": scope.namespace, "worker": scope.worker, "version": scope.version}


SPEC = BindingSpec(
    kind="assets", label="Static Assets", check=no_check,
    doc="no target: the version's own Static Assets (named by `assets.binding`)",
    wrangler_keys=("assets",), parse=_parse, props=_props, entrypoint="WdlAssets",
    module="assets")


def check_version(bindings: Sequence[BindingLike], binding_name: str) -> None:
    """A version's assets binding: exactly the one its `assets.binding` names (none
    without), so no binding reaches another version's files or one without assets."""
    named = [b.name for b in bindings if b.kind == SPEC.kind]
    if named != ([binding_name] if binding_name else []):
        raise InvalidEvent("bindings", f"the {SPEC.kind} binding is made from "
                           "`assets.binding` only" + (f" ({binding_name!r})"
                                                      if binding_name else ""))
