"""`[[ratelimits]]`: Cloudflare's rate limiting binding, `env.X.limit({key})`.

Checked as the pinned wrangler checks it (its validateRateLimitBinding), plus WDL's
own rule that a `namespace_id` is an integer, as Cloudflare's docs require: it names
counters (services/ratelimit/, docs/redis-keys.md), so nothing a tenant writes there
can carry a separator into another namespace's keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from eventlog.bindings.spec import BindingConfigError, BindingLike, BindingSpec, Scope
from eventlog.errors import InvalidEvent

NAMESPACE_ID_RE = re.compile(r"[0-9]{1,16}")
PERIODS = (10, 60)
LIMIT_MAX = 1_000_000_000
# A binding's `value`: "<limit>/<period>".
_VALUE_RE = re.compile(r"([1-9][0-9]{0,9})/(10|60)")


def value_of(limit: int, period: int) -> str:
    return f"{limit}/{period}"


def parse_value(value: str) -> tuple[int, int]:
    """(limit, period) of an accepted binding's value."""
    limit, _, period = value.partition("/")
    return int(limit), int(period)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _parse(doc: Mapping[str, Any], config: str) -> list[dict[str, str]]:
    entries = doc.get("ratelimits")
    if entries is None:
        return []
    if not isinstance(entries, list):
        raise BindingConfigError(f"{config}: `ratelimits` must be a list of tables")
    return [_entry(entry, f"{config}: ratelimits[{i}]") for i, entry in enumerate(entries)]


def _entry(entry: object, field: str) -> dict[str, str]:
    if not isinstance(entry, dict):
        raise BindingConfigError(
            f'{field}: "ratelimits" bindings should be objects, but got {json.dumps(entry)}')
    name, nsid, simple = entry.get("name"), entry.get("namespace_id"), entry.get("simple")
    if not isinstance(name, str) or not name:
        raise BindingConfigError(f'{field}: bindings must have a string "name" field')
    if not isinstance(nsid, str):
        raise BindingConfigError(f'{field}: bindings must have a string "namespace_id" field')
    if NAMESPACE_ID_RE.fullmatch(nsid) is None:
        raise BindingConfigError(
            f'{field}: "namespace_id" must be an integer (as Cloudflare requires), at most '
            f"16 digits; got {nsid!r}")
    if not isinstance(simple, dict):
        raise BindingConfigError(f'{field}: bindings must have a "simple" configuration object')
    limit: Any = simple.get("limit")
    period: Any = simple.get("period")
    if not _number(limit):
        raise BindingConfigError(f'{field}: "simple.limit" must be a number')
    if not _number(period):
        raise BindingConfigError(f'{field}: "simple.period" is required and must be a number')
    if period not in PERIODS:
        raise BindingConfigError(
            f'{field}: "simple.period" must be either 10 or 60 but got {period}')
    if limit != int(limit) or not 1 <= limit <= LIMIT_MAX:
        raise BindingConfigError(
            f'{field}: "simple.limit" must be a whole number 1..{LIMIT_MAX}; got {limit}')
    unknown = sorted(set(entry) - {"name", "namespace_id", "simple"}) or \
        sorted(f"simple.{k}" for k in set(simple) - {"limit", "period"})
    if unknown:
        raise BindingConfigError(f"{field}: unexpected field `{unknown[0]}`")
    return {"name": name, "kind": "ratelimit", "target": nsid,
            "value": value_of(int(limit), int(period))}


def _check(field: str, b: BindingLike) -> None:
    if NAMESPACE_ID_RE.fullmatch(b.target) is None:
        raise InvalidEvent(f"{field}.target", f"{b.target!r} is not a rate limit "
                           "namespace_id (an integer, at most 16 digits)")
    match = _VALUE_RE.fullmatch(b.value)
    if match is None or int(match.group(1)) > LIMIT_MAX:
        raise InvalidEvent(f"{field}.value", "a ratelimit binding's value is "
                           f"\"<limit>/<period>\": limit 1..{LIMIT_MAX}, period 10 or 60")


def _props(scope: Scope, b: Mapping[str, Any]) -> dict[str, Any]:
    # Counters are the caller's namespace's: the namespace comes from the scope, never
    # from the tenant.
    limit, period = parse_value(b.get("value", ""))
    return {"namespace": scope.namespace, "worker": scope.worker, "version": scope.version,
            "namespace_id": b["target"], "limit": limit, "period": period}


SPEC = BindingSpec(
    kind="ratelimit", label="rate limit", check=_check, uses=frozenset({"target", "value"}),
    doc="target: the namespace_id; value: \"<limit>/<period>\" (period 10 or 60)",
    wrangler_keys=("ratelimits",), parse=_parse, props=_props, entrypoint="WdlRatelimit",
    module="ratelimit")
