"""`version_metadata` and `[[ratelimits]]` of a wrangler config, as control API bindings.

Checked as the pinned wrangler checks them (its validateRateLimitBinding and the
version_metadata table), plus WDL's own rule that a `namespace_id` is an integer
(as Cloudflare's docs require; it names counters, docs/compatibility.md).
"""

from __future__ import annotations

import json
from typing import Any

from eventlog.events.version_meta import (
    RATELIMIT_LIMIT_MAX,
    RATELIMIT_NAMESPACE_ID_RE,
    RATELIMIT_PERIODS,
    ratelimit_value,
)


class VersionBindingConfigError(ValueError):
    pass


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def read_version_metadata(doc: dict[str, Any], config: str) -> list[dict[str, str]]:
    table = doc.get("version_metadata")
    if table is None:
        return []
    if not isinstance(table, dict) or not isinstance(table.get("binding"), str) \
            or not table["binding"]:
        raise VersionBindingConfigError(
            f"{config}: `version_metadata` must be a table with a string `binding`")
    unknown = sorted(set(table) - {"binding"})
    if unknown:
        raise VersionBindingConfigError(
            f"{config}: unexpected field `version_metadata.{unknown[0]}`")
    return [{"name": table["binding"], "kind": "version_metadata"}]


def read_ratelimits(doc: dict[str, Any], config: str) -> list[dict[str, str]]:
    entries = doc.get("ratelimits")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise VersionBindingConfigError(f"{config}: `ratelimits` must be a list of tables")
    out: list[dict[str, str]] = []
    for i, entry in enumerate(entries):
        field = f"{config}: ratelimits[{i}]"
        if not isinstance(entry, dict):
            raise VersionBindingConfigError(
                f'{field}: "ratelimits" bindings should be objects, but got {json.dumps(entry)}')
        name, nsid, simple = entry.get("name"), entry.get("namespace_id"), entry.get("simple")
        if not isinstance(name, str) or not name:
            raise VersionBindingConfigError(f'{field}: bindings must have a string "name" field')
        if not isinstance(nsid, str):
            raise VersionBindingConfigError(
                f'{field}: bindings must have a string "namespace_id" field')
        if RATELIMIT_NAMESPACE_ID_RE.fullmatch(nsid) is None:
            raise VersionBindingConfigError(
                f'{field}: "namespace_id" must be an integer (as Cloudflare requires), at '
                f"most 16 digits; got {nsid!r}")
        if not isinstance(simple, dict):
            raise VersionBindingConfigError(
                f'{field}: bindings must have a "simple" configuration object')
        limit: Any = simple.get("limit")
        period: Any = simple.get("period")
        if not _number(limit):
            raise VersionBindingConfigError(f'{field}: "simple.limit" must be a number')
        if not _number(period):
            raise VersionBindingConfigError(
                f'{field}: "simple.period" is required and must be a number')
        if period not in RATELIMIT_PERIODS:
            raise VersionBindingConfigError(
                f'{field}: "simple.period" must be either 10 or 60 but got {period}')
        if limit != int(limit) or not 1 <= limit <= RATELIMIT_LIMIT_MAX:
            raise VersionBindingConfigError(
                f'{field}: "simple.limit" must be a whole number 1..{RATELIMIT_LIMIT_MAX}; '
                f"got {limit}")
        unknown = sorted(set(entry) - {"name", "namespace_id", "simple"}) or \
            sorted(f"simple.{k}" for k in set(simple) - {"limit", "period"})
        if unknown:
            raise VersionBindingConfigError(f"{field}: unexpected field `{unknown[0]}`")
        out.append({"name": name, "kind": "ratelimit", "target": nsid,
                    "value": ratelimit_value(int(limit), int(period))})
    return out
