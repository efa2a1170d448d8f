"""`version_metadata`: the version's `{id, tag, timestamp}`, plain data in env."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from eventlog.bindings.spec import BindingConfigError, BindingSpec, Scope, no_check


def iso_timestamp(ms: int) -> str:
    """Upload time as Cloudflare's version metadata gives it: ISO 8601, UTC, ms, `Z`."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    table = doc.get("version_metadata")
    if table is None:
        return []
    if not isinstance(table, dict) or not isinstance(table.get("binding"), str) \
            or not table["binding"]:
        raise BindingConfigError(
            f"{config}: `version_metadata` must be a table with a string `binding`")
    unknown = sorted(set(table) - {"binding"})
    if unknown:
        raise BindingConfigError(f"{config}: unexpected field `version_metadata.{unknown[0]}`")
    return [{"name": table["binding"], "kind": "version_metadata"}]


def _value(scope: Scope, b: Mapping[str, Any], secrets: Mapping[str, str]) -> Any:
    return {"id": scope.version, "tag": scope.tag, "timestamp": iso_timestamp(scope.uploaded_at)}


SPEC = BindingSpec(
    kind="version_metadata", label="version metadata", check=no_check, doc="no target",
    wrangler_keys=("version_metadata",), parse=_parse, value=_value)
