"""JSON text from a tenant, decoded without `RecursionError`.

Python's `json` and msgspec recurse once per nesting level and raise
`RecursionError` (not `ValueError`) around 1,000 levels. A tenant controls the
text its bindings send to the data services: the tenant wrappers run in its own
isolate, where it may replace `JSON.stringify` or `String`. Uncaught, the error
answered 500 and wrote a traceback at ERROR — which the log's rate limit always
lets through — for every request (tests/security/test_redteam_fair_deep.py).

`loads` turns a too-deep text into `ValueError`, like any other text that is not
what the service takes; `check_depth` bounds a decoded value iteratively, for the
services that walk what they decoded recursively afterwards.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec


class TooDeep(ValueError):
    pass


def depth_exceeds(value: Any, limit: int) -> bool:
    """Whether a decoded value nests deeper than `limit` (iterative, stops early)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def loads(raw: bytes | str, max_depth: int | None = None) -> Any:
    """json.loads; ValueError (TooDeep) for a text nested beyond the codec's recursion
    or deeper than `max_depth`."""
    try:
        value = json.loads(raw)
    except RecursionError:
        raise TooDeep("JSON nested too deeply") from None
    if max_depth is not None and depth_exceeds(value, max_depth):
        raise TooDeep(f"JSON nested deeper than {max_depth} levels")
    return value


def decode(raw: bytes | str) -> Any:
    """msgspec.json.decode; msgspec.DecodeError for a text nested beyond its recursion."""
    try:
        return msgspec.json.decode(raw)
    except RecursionError:
        raise msgspec.DecodeError("JSON nested too deeply") from None
