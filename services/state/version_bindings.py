"""The env entries of the `version_metadata` and `ratelimit` binding kinds.

`version_metadata` is plain data ({id, tag, timestamp}, as Cloudflare gives it);
`ratelimit` is a stub of the gateway's WdlRatelimit whose props — the namespace and
the binding's namespace_id, limit and period — only the platform sets here.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from eventlog.events.version_meta import parse_ratelimit_value


def iso_timestamp(ms: int) -> str:
    """Upload time as Cloudflare's version metadata gives it: ISO 8601, UTC, ms, `Z`."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds") \
        .replace("+00:00", "Z")


def version_binding(env: dict[str, Any], platform: list[dict[str, Any]], ns: str,
                    worker: str, version: str, meta: dict[str, Any],
                    binding: dict[str, Any]) -> None:
    name = binding["name"]
    if binding["kind"] == "version_metadata":
        env[name] = {"id": version, "tag": meta.get("tag") or "",
                     "timestamp": iso_timestamp(int(meta.get("uploaded_at") or 0))}
        return
    limit, period = parse_ratelimit_value(binding.get("value", ""))
    platform.append({"name": name, "kind": "ratelimit", "props": {
        "namespace": ns, "worker": worker, "version": version,
        "namespace_id": binding["target"], "limit": limit, "period": period}})
