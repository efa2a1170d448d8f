"""What a version carries besides its code: the deploy's tag and message, and the two
binding kinds that need no resource — `version_metadata` and `ratelimit`.

Kept apart from eventlog/events/workers.py so each kind's rules live in one place
(docs/compatibility.md, ## Version metadata and ## Rate limiting).
"""

from __future__ import annotations

import re
from typing import Protocol

from eventlog.errors import InvalidEvent

# Cloudflare's annotations on a version: `workers/tag` at most 25 characters,
# `workers/message` at most 100 (the Workers Versions API). Refused past those here,
# not truncated: the deployer learns at once what was not stored.
TAG_MAX = 25
MESSAGE_MAX = 100

# `namespace_id`: "an integer, unique to your account" (Cloudflare's rate limiting
# docs). Digits only: it becomes part of a Redis key (docs/redis-keys.md), so nothing
# a tenant writes there can carry a separator into another namespace's keys.
RATELIMIT_NAMESPACE_ID_RE = re.compile(r"[0-9]{1,16}")
RATELIMIT_PERIODS = (10, 60)
RATELIMIT_LIMIT_MAX = 1_000_000_000
# A ratelimit binding's `value`: "<limit>/<period>".
_RATELIMIT_VALUE_RE = re.compile(r"([1-9][0-9]{0,9})/(10|60)")


class _BindingLike(Protocol):
    @property
    def target(self) -> str: ...
    @property
    def value(self) -> str: ...


def printable(field: str, value: object, max_len: int) -> str:
    """A tag or message: a string of at most `max_len` printable characters (no control
    characters or line breaks: it is shown in one table cell and a worker's env)."""
    if not isinstance(value, str):
        raise InvalidEvent(field, "must be a string")
    if len(value) > max_len:
        raise InvalidEvent(field, f"longer than {max_len} characters")
    if value and not value.isprintable():
        raise InvalidEvent(field, "must be printable text (no control characters or "
                           "line breaks)")
    return value


def ratelimit_value(limit: int, period: int) -> str:
    return f"{limit}/{period}"


def parse_ratelimit_value(value: str) -> tuple[int, int]:
    """(limit, period) of an accepted binding's value."""
    limit, _, period = value.partition("/")
    return int(limit), int(period)


def check_binding(field: str, kind: str, binding: _BindingLike) -> None:
    """The rules of the two kinds (the caller checked the name and namespace/entrypoint)."""
    if kind == "version_metadata":
        if binding.target or binding.value:
            raise InvalidEvent(field, "a version_metadata binding has no target or value")
        return
    if RATELIMIT_NAMESPACE_ID_RE.fullmatch(binding.target) is None:
        raise InvalidEvent(f"{field}.target", f"{binding.target!r} is not a rate limit "
                           "namespace_id (an integer, at most 16 digits)")
    match = _RATELIMIT_VALUE_RE.fullmatch(binding.value)
    if match is None or int(match.group(1)) > RATELIMIT_LIMIT_MAX:
        raise InvalidEvent(f"{field}.value", "a ratelimit binding's value is "
                           f"\"<limit>/<period>\": limit 1..{RATELIMIT_LIMIT_MAX}, "
                           "period 10 or 60")
