"""One tenant invocation as the gateway reports it, validated and bounded again.

The gateway (`workerd/gateway/tail.js`) already normalizes and truncates; the
data service trusts it (internal token) but still re-checks shapes and sizes,
so a bug there cannot make one event arbitrarily large here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

KINDS = frozenset({"fetch", "scheduled", "rpc", "queue", "email", "alarm", "tail", "other"})
MAX_TEXT = 16 * 1024  # per string; the gateway's budget is 16 KiB per whole event
MAX_NAME = 256
MAX_ITEMS = 1000  # log lines or exceptions per event


def _text(value: Any, limit: int = MAX_TEXT) -> str:
    text = value if isinstance(value, str) else ("" if value is None else str(value))
    return text if len(text) <= limit else text[:limit] + "…"


def _opt_text(value: Any, limit: int = MAX_TEXT) -> str | None:
    return None if value is None else _text(value, limit)


def _number(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def _part(value: Any) -> Any:
    """A console argument: JSON values pass (the gateway bounded them), others as text."""
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | int | float | list | dict):
        return value
    return _text(value)


def _logs(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        return []
    out = []
    for entry in raw[:MAX_ITEMS]:
        if not isinstance(entry, dict):
            continue
        message = entry.get("message")
        parts = message if isinstance(message, list) else [message]
        out.append({"level": _text(entry.get("level") or "log", 16),
                    "message": [_part(p) for p in parts[:MAX_ITEMS]],
                    "ts": _number(entry.get("ts"))})
    return out


def _exceptions(raw: Any) -> list[dict[str, Any]]:
    if not isinstance(raw, list):
        return []
    return [{"name": _text(e.get("name") or "Error", MAX_NAME),
             "message": _text(e.get("message")),
             "stack": _opt_text(e.get("stack"))}
            for e in raw[:MAX_ITEMS] if isinstance(e, dict)]


def message_text(parts: list[Any]) -> str:
    """A console line as one string: strings as they are, other values as JSON."""
    return " ".join(p if isinstance(p, str) else json.dumps(p, ensure_ascii=False)
                    for p in parts)


@dataclass
class TailEvent:
    namespace: str
    worker: str
    version: str | None
    ts: int | None
    kind: str
    method: str | None
    url: str | None
    status: int | None
    outcome: str
    duration_ms: int | None
    logs: list[dict[str, Any]] = field(default_factory=list)
    exceptions: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    entrypoint: str | None = None
    request_id: str | None = None  # the gateway's x-wdl-request-id

    @property
    def is_error(self) -> bool:
        """`--status error`: the invocation did not finish normally, or answered 5xx."""
        return self.outcome != "ok" or (self.status is not None and self.status >= 500)

    @property
    def status_class(self) -> str:
        """`2xx`…`5xx`, or `none` when there was no HTTP response (exceptions, crons, RPC)."""
        if self.status is None or not 100 <= self.status <= 599:
            return "none"
        return f"{self.status // 100}xx"

    @cached_property
    def haystack(self) -> str:
        """Everything `--search` looks at, lowercased once per event."""
        pieces = [self.url or ""]
        pieces += [message_text(log["message"]) for log in self.logs]
        for exc in self.exceptions:
            pieces += [exc["name"], exc["message"], exc["stack"] or ""]
        return "\n".join(pieces).lower()

    def to_json(self) -> dict[str, Any]:
        return {"type": "event", "namespace": self.namespace, "worker": self.worker,
                "version": self.version, "ts": self.ts, "kind": self.kind,
                "entrypoint": self.entrypoint, "method": self.method, "url": self.url,
                "status": self.status, "outcome": self.outcome,
                "duration_ms": self.duration_ms, "logs": self.logs,
                "exceptions": self.exceptions, "truncated": self.truncated,
                "request_id": self.request_id}

    @cached_property
    def line(self) -> bytes:
        """The NDJSON line, encoded once however many subscribers get it."""
        return (json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))
                + "\n").encode()


def parse_event(raw: Any) -> TailEvent | None:
    """A `TailEvent`, or None when namespace or worker are missing (the event is counted
    as invalid and dropped)."""
    if not isinstance(raw, dict):
        return None
    namespace, worker = raw.get("namespace"), raw.get("worker")
    if not isinstance(namespace, str) or not isinstance(worker, str) or \
            not namespace or not worker:
        return None
    kind = raw.get("kind")
    status = _number(raw.get("status"))
    duration = _number(raw.get("duration_ms"))
    return TailEvent(
        namespace=namespace[:MAX_NAME], worker=worker[:MAX_NAME],
        version=_opt_text(raw.get("version"), MAX_NAME),
        ts=_number(raw.get("ts")),
        kind=kind if isinstance(kind, str) and kind in KINDS else "other",
        method=_opt_text(raw.get("method"), MAX_NAME),
        url=_opt_text(raw.get("url"), 4096),
        status=status,
        outcome=_text(raw.get("outcome") or "unknown", 64),
        duration_ms=duration if duration is not None and duration >= 0 else None,
        logs=_logs(raw.get("logs")),
        exceptions=_exceptions(raw.get("exceptions")),
        truncated=raw.get("truncated") is True,
        entrypoint=_opt_text(raw.get("entrypoint"), MAX_NAME),
        request_id=_opt_text(raw.get("request_id"), 64),
    )
