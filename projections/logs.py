"""Logging for every platform process: one JSON object per line, or text for a person.

Every record carries `time` (ISO 8601, UTC), `level`, `logger` and `message`, then
the fields bound to the current context (`bound(request_id=…)`, inherited by the
tasks a request starts) and those passed as `extra=` (`event_id`, `namespace`, …).
An operator greps one request id across the API's and the projector's lines.

`WDL_LOG_FORMAT=json|text` decides; without it, production-shaped processes
(`wdl up`, `python -m …`) write JSON when stderr is not a terminal and `wdl dev`
writes text. `WDL_LOG_LEVEL` sets the level (default INFO). Each call site writes at
most `WDL_LOG_BURST` (20) warnings or lesser records a minute (`RateLimit`).

It lives with the projections because the projector logs through it and must not
import `services`; `services.logs` re-exports it for everyone else.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import structlog
from structlog.contextvars import bound_contextvars as bound
from structlog.typing import EventDict, Processor, WrappedLogger

__all__ = ["FORMAT_ENV", "LEVEL_ENV", "bound", "choose_format", "configure", "context", "formatter"]

FORMAT_ENV = "WDL_LOG_FORMAT"
LEVEL_ENV = "WDL_LOG_LEVEL"
# Records per call site and minute, warnings and below (RateLimit).
RATE_ENV = "WDL_LOG_BURST"
FORMATS = ("json", "text")
_FIRST = ("time", "level", "logger", "message")
# Extras libraries attach that repeat the message (uvicorn: the message with ANSI colours).
_NOISE = ("color_message",)
# Chatty at INFO (one line per HTTP request they make); their warnings still show.
_QUIET = ("httpx", "httpcore", "aiokafka")


def choose_format(env: Mapping[str, str] | None = None, stream: TextIO | None = None, *,
                  json_when_piped: bool = True) -> str:
    """`WDL_LOG_FORMAT` if set, else JSON for a pipe or file when `json_when_piped`."""
    value = (os.environ if env is None else env).get(FORMAT_ENV, "").strip().lower()
    if value:
        if value not in FORMATS:
            raise ValueError(f"{FORMAT_ENV} must be one of {', '.join(FORMATS)}, not {value!r}")
        return value
    return "json" if json_when_piped and not _is_tty(stream or sys.stderr) else "text"


def _is_tty(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def _drop_noise(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    for key in _NOISE:
        event.pop(key, None)
    return event


def _ordered(_: WrappedLogger, __: str, event: EventDict) -> EventDict:
    # Fixed fields first, so lines read (and diff) alike whatever was bound.
    head = {key: event.pop(key) for key in _FIRST if key in event}
    return {**head, **event}


def formatter(fmt: str, *, colors: bool = False) -> logging.Formatter:
    """A stdlib formatter for `fmt` ("json" or "text") with the context and extras."""
    pre_chain: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        _drop_noise,
        structlog.processors.TimeStamper(fmt="iso", utc=True, key="time"),
    ]
    processors: list[Processor]
    if fmt == "json":
        processors = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.EventRenamer("message"),
            structlog.processors.format_exc_info,
            _ordered,
            structlog.processors.JSONRenderer(default=str),
        ]
    elif fmt == "text":
        processors = [
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # No rich tracebacks: their local variables could show request data.
            structlog.dev.ConsoleRenderer(colors=colors, timestamp_key="time",
                                          exception_formatter=structlog.dev.plain_traceback,
                                          pad_event_to=0),
        ]
    else:
        raise ValueError(f"unknown log format {fmt!r}")
    return structlog.stdlib.ProcessorFormatter(foreign_pre_chain=pre_chain,
                                               processors=processors)


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler `configure` installs (so a second call replaces it)."""


class RateLimit(logging.Filter):
    """At most `burst` records per `window_s` of each call site (logger + message
    template), warnings and below; the rest are counted, and the next record of that
    site that passes says how many were dropped (`suppressed`).

    Tenants decide how often many of the platform's warnings happen (a workflow that
    fails at every run, a poisoned message, a hang): without this, one tenant's loop
    writes the platform's log as fast as it can loop, with a traceback per line.
    Errors and above always pass. Sites are few (the code's call sites), so the table
    stays small; a site's state lives for one window.
    """

    def __init__(self, burst: int = 20, window_s: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.burst = burst
        self.window_s = window_s
        self._clock = clock
        self._sites: dict[tuple[str, str], list[float]] = {}  # [since, passed, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.ERROR:
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        site = self._sites.get(key)
        if site is None or now - site[0] >= self.window_s:
            dropped = int(site[2]) if site is not None else 0
            if len(self._sites) > 10_000:
                self._sites.clear()  # message templates built at run time: start over
            self._sites[key] = [now, 1.0, 0.0]
            if dropped:
                record.suppressed = dropped
            return True
        if site[1] < self.burst:
            site[1] += 1
            return True
        site[2] += 1
        return False


def configure(*, json_when_piped: bool = True, level: int | str | None = None,
              stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> str:
    """Send every logger's records to stderr in the chosen format; returns the format.

    Replaces a handler an earlier call installed, leaves any other handler alone."""
    environ = os.environ if env is None else env
    out = stream or sys.stderr
    fmt = choose_format(environ, out, json_when_piped=json_when_piped)
    handler = _Handler(out)
    handler.addFilter(RateLimit(int(environ.get(RATE_ENV) or 20)))
    handler.setFormatter(formatter(fmt, colors=fmt == "text" and _is_tty(out)))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level if level is not None else environ.get(LEVEL_ENV, "INFO").upper())
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))
    return fmt


def context() -> dict[str, Any]:
    """The fields bound to the current context (what the next record will carry)."""
    return structlog.contextvars.get_contextvars()
