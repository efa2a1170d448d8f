"""Plain values in env: `secret`, `json` and `text` bindings (no gateway entrypoint).

Wrangler's `vars` become `text` bindings or vars, and JSON-valued ones `json` bindings
(cli/wrangler.py split_vars); secrets come from `wdl secret`, bound by name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from eventlog import validation as v
from eventlog.bindings.spec import NO_VALUE, BindingLike, BindingSpec
from eventlog.errors import InvalidEvent

# A `json` var is parsed again wherever the worker's env is built and encoded: bounded
# far below the codecs' recursion (the workflow engine's values use the same bound).
MAX_JSON_VAR_DEPTH = 64


def nests_deeper(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item \
            if isinstance(item, list) else None
        if children is None:
            continue
        if depth + 1 > limit:
            return True
        stack.extend((child, depth + 1) for child in children)
    return False


def _check_json(field: str, b: BindingLike) -> None:
    # RecursionError too: 5 KiB of brackets nest 2,500 deep.
    try:
        value = json.loads(b.value)
    except (ValueError, RecursionError):
        raise InvalidEvent(f"{field}.value", "is not JSON text") from None
    if nests_deeper(value, MAX_JSON_VAR_DEPTH):
        raise InvalidEvent(f"{field}.value", f"nests deeper than {MAX_JSON_VAR_DEPTH} levels")


def _check_secret(field: str, b: BindingLike) -> None:
    v.secret_name(f"{field}.target", b.target)


def _check_text(field: str, b: BindingLike) -> None:
    """Any string (its length is bounded for every kind)."""


def _secret(b: Mapping[str, Any], secrets: Mapping[str, str]) -> Any:
    # Resolved at load time; a secret deleted since is absent from env.
    return secrets.get(b.get("target", ""), NO_VALUE)


SECRET = BindingSpec(
    kind="secret", label="secret", check=_check_secret, uses=frozenset({"target"}),
    doc="target: the secret's name", value=_secret)
JSON = BindingSpec(
    kind="json", label="JSON value", check=_check_json, uses=frozenset({"value"}),
    doc="value: JSON text", value=lambda b, _s: json.loads(b.get("value") or "null"))
TEXT = BindingSpec(
    kind="text", label="text", check=_check_text, uses=frozenset({"value"}),
    doc="value: the string", value=lambda b, _s: b.get("value", ""))
