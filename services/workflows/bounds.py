"""Bounds on tenant data in the workflow engine: nesting depth, string lengths.

Every value a tenant hands the engine (step results, outputs, params, event
payloads, errors) is JSON. Python's JSON codecs and msgspec recurse once per
nesting level and raise `RecursionError` around 1,000 levels, from wherever the
call stack happens to be: an array nested 3,000 deep in a step's result used to
escape the engine's error handling and re-run the instance in a tight loop.
So raw JSON from a tenant is *scanned* for its depth before it is parsed (the
scan is iterative, C-speed string operations, bounded work), and every value is
at most `MAX_DEPTH` levels deep, far below any recursion limit of the codecs
that later encode it (records, invocation bodies, API answers).

Cloudflare documents no nesting limit for Workflows values; 64 levels is ours
(docs/workflows.md, "Limits").
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.tenant_json import TooDeep, depth_exceeds

__all__ = ["MAX_DEPTH", "TooDeep", "check_value", "clean_error", "clip", "depth_exceeds",
           "loads", "scan_depth"]

MAX_DEPTH = 64  # levels of arrays/objects in one value (a scalar is depth 0)
# Envelope levels around a value in the engine's own messages (report, record, request).
ENVELOPE_DEPTH = 8

MAX_ERROR_NAME = 256  # characters
MAX_ERROR_MESSAGE = 8192  # characters; a step error is replayed on every invocation
MAX_STEP_KEY = 512  # `do:<name>#<n>`: the step's name is at most 256 characters + the tag
MAX_EVENT_TYPE = 100

# A string runs to its closing quote - or, unterminated, to the end of the text in one
# match: otherwise each later `"` started a new attempt to the end (quadratic: 128 KB of
# `\"` took 63 s). An unterminated string is not JSON; the parse refuses it after.
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)', re.DOTALL)
_BRACKETS = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def scan_depth(raw: bytes, limit: int) -> int:
    """The nesting depth of the JSON text `raw` if it is at most `limit`; TooDeep when
    deeper, ValueError when its brackets do not balance. Iterative: each pass removes
    the innermost empty pairs, so it makes at most `limit + 1` passes over the text."""
    text = _STRING.sub(b"", raw).translate(_BRACKETS, _NOT_BRACKETS)
    depth = 0
    while text:
        if depth >= limit:
            raise TooDeep(f"nested deeper than {limit} levels")
        shorter = text.replace(b"[]", b"")
        if len(shorter) == len(text):
            raise ValueError("unbalanced brackets: not JSON")
        text, depth = shorter, depth + 1
    return depth


def loads(raw: bytes, limit: int) -> Any:
    """json.loads of tenant text, refused (TooDeep) before parsing if deeper than `limit`."""
    scan_depth(raw, limit)
    return json.loads(raw)


def check_value(value: Any, what: str) -> None:
    """TooDeep with a Cloudflare-like message when `value` nests deeper than MAX_DEPTH."""
    if depth_exceeds(value, MAX_DEPTH):
        raise TooDeep(f"{what} is nested deeper than {MAX_DEPTH} levels")


def clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    marker = f"... [truncated {len(text) - limit} characters]"
    return text[:max(0, limit - len(marker))] + marker


def clean_error(error: Any) -> dict[str, str]:
    """A tenant's error as stored and replayed: `name` and `message` strings (and `stack`
    when given), each clipped; anything else in it is dropped."""
    if not isinstance(error, dict):
        return {"name": "Error", "message": clip(_text(error), MAX_ERROR_MESSAGE)}
    out = {"name": clip(_text(error.get("name") or "Error"), MAX_ERROR_NAME),
           "message": clip(_text(error.get("message", "")), MAX_ERROR_MESSAGE)}
    if error.get("stack") is not None:
        out["stack"] = clip(_text(error["stack"]), MAX_ERROR_MESSAGE)
    return out


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        # Depth-checked already by whoever decoded it; still never recurse on tenant data.
        return "[object]" if depth_exceeds(value, MAX_DEPTH) else json.dumps(value)[:65536]
    return str(value)[:65536]
