"""`wdl tail WORKER`: live trace events of a worker, from the control API's NDJSON stream.

pretty (default): one line per invocation, then its console lines and exceptions
indented; json: one JSON object per line (events and `dropped` markers). Status
messages go to stderr. Ctrl-C ends it (exit 0). The server ends a stream after
an hour; `wdl tail` then reconnects.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TextIO

import httpx
import typer

from cli.client import ApiFailure, ControlClient, raise_for
from cli.common import NsOpt, ProfileOpt, TokenOpt, UrlOpt, connect, err, fail

# Longer than the server's heartbeat interval (10 s): a silent stream is dead.
READ_TIMEOUT_S = 35.0


class Format(StrEnum):
    pretty = "pretty"
    json = "json"


class Status(StrEnum):
    ok = "ok"
    error = "error"


def _iso(ms: Any) -> str:
    if not isinstance(ms, int | float):
        return "-"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _text(parts: Any) -> str:
    if not isinstance(parts, list):
        parts = [parts]
    return " ".join(p if isinstance(p, str) else json.dumps(p, ensure_ascii=False)
                    for p in parts)


def pretty(event: dict[str, Any]) -> str:
    """`2026-12-02T10:00:00Z GET https://… 200 ok 3ms`, then indented console lines and
    exceptions (with their stack)."""
    what = event.get("method") or event.get("kind") or "-"
    if event.get("kind") not in (None, "fetch"):
        what = f"{event['kind']}" + (f" {event['method']}" if event.get("method") else "")
    status = event.get("status")
    duration = event.get("duration_ms")
    head = " ".join(str(x) for x in (
        _iso(event.get("ts")), what, event.get("url") or "-",
        status if status is not None else "-", event.get("outcome") or "-",
        f"{duration}ms" if duration is not None else "-"))
    lines = [head]
    for log in event.get("logs") or []:
        lines.append(f"  [{log.get('level', 'log')}] {_text(log.get('message'))}")
    for exc in event.get("exceptions") or []:
        lines.append(f"  ! {exc.get('name', 'Error')}: {exc.get('message', '')}")
        for frame in str(exc.get("stack") or "").splitlines():
            if frame.strip():
                lines.append(f"      {frame.strip()}")
    if event.get("truncated"):
        lines.append("  (truncated: the event exceeded the per-event log budget)")
    return "\n".join(lines)


def _show(line: dict[str, Any], fmt: Format, out: TextIO) -> str | None:
    """Prints one stream line; returns the `end` reason when the server ended the stream."""
    kind = line.get("type")
    if kind == "heartbeat":
        return None
    if kind == "connected":
        err.print(f"tailing {line.get('namespace')}/{line.get('worker')} "
                  "(Ctrl-C to stop)", highlight=False)
        return None
    if kind == "end":
        return str(line.get("reason") or "end")
    if kind == "dropped":
        err.print(f"[yellow]{line.get('count')} events dropped[/] (this client or its "
                  "connection is slower than the worker)", highlight=False)
        if fmt is Format.json:
            out.write(json.dumps(line) + "\n")
    elif kind == "event":
        out.write((json.dumps(line, ensure_ascii=False) if fmt is Format.json
                   else pretty(line)) + "\n")
    out.flush()
    return None


def _follow(client: ControlClient, path: str, params: dict[str, Any], fmt: Format) -> str:
    """Streams until the server ends the stream; the `end` reason."""
    timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
    with client.http.stream("GET", path, params=params, timeout=timeout) as response:
        raise_for(response)
        for raw in response.iter_lines():
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(line, dict) and (reason := _show(line, fmt, sys.stdout)):
                return reason
    return "closed"


def tail(worker: Annotated[str, typer.Argument(help="worker name")],
         ns: NsOpt = None,
         fmt: Annotated[Format, typer.Option("--format", "-f", help="pretty or json")] =
         Format.pretty,
         status: Annotated[Status | None, typer.Option(
             "--status", help="ok, or error (an exception or other failed outcome, or 5xx)")]
         = None,
         search: Annotated[str | None, typer.Option(
             "--search", help="only events whose URL, console lines or exceptions contain "
             "TEXT (case-insensitive)")] = None,
         sample: Annotated[float | None, typer.Option(
             "--sample", help="keep this fraction of the events (0 < RATE <= 1)")] = None,
         url: UrlOpt = None, token: TokenOpt = None, profile: ProfileOpt = None) -> None:
    """Stream a worker's invocations live: request, status, outcome, console lines and
    exceptions. Best effort: nothing is stored; a slow client is told what it missed."""
    if sample is not None and not 0 < sample <= 1:
        raise fail("--sample must be a rate with 0 < RATE <= 1", 2)
    params: dict[str, Any] = {"status": status.value if status else None, "search": search,
                              "sample": sample}
    params = {k: v for k, v in params.items() if v is not None}
    with connect(url, token, profile, ns, need_namespace=True) as (client, namespace):
        path = f"/v1/namespaces/{namespace}/workers/{worker}/tail"
        try:
            while True:
                try:
                    reason = _follow(client, path, params, fmt)
                except httpx.ReadTimeout:
                    raise fail("the tail stream went silent (no heartbeat for "
                               f"{READ_TIMEOUT_S:.0f} s)") from None
                except httpx.HTTPError as exc:
                    raise ApiFailure(0, "unreachable", f"cannot reach {client.config.url}: "
                                     f"{type(exc).__name__}") from None
                if reason != "max_duration":
                    err.print(f"the server ended the tail ({reason})", highlight=False)
                    return
        except KeyboardInterrupt:
            return


def register(app: typer.Typer) -> None:
    app.command("tail")(tail)
