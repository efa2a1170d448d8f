"""Fixed-window counters for the `ratelimit` binding: Redis in production, memory on
`wdl dev`.

Semantics are Miniflare's (workerd/node_modules/miniflare, ratelimit.worker.js): time
is cut into windows of `period` seconds aligned on the epoch; a call succeeds and
counts while the window's count is below `limit`, and fails without counting once it
is not. Counters are per (WDL namespace, namespace_id, period, key digest): the
namespace is the caller's (props only the platform sets), the namespace_id digits
only, the key a sha256 the gateway made — so no tenant string is ever spliced into a
key (docs/redis-keys.md, ## Rate limits).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Protocol

from redis.asyncio import Redis

NAMESPACE_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
NAMESPACE_ID_RE = re.compile(r"[0-9]{1,16}")
DIGEST_RE = re.compile(r"[0-9a-f]{64}")
PERIODS = frozenset({10, 60})
LIMIT_MAX = 1_000_000_000


class RatelimitRefusal(ValueError):
    """A request the store does not take (the gateway's own checks make these rare)."""


def check(ns: str, namespace_id: str, digest: str, limit: int, period: int) -> None:
    """The allow-list every part of a counter's name passes before it is used."""
    if NAMESPACE_RE.fullmatch(ns) is None:
        raise RatelimitRefusal("bad namespace")
    if NAMESPACE_ID_RE.fullmatch(namespace_id) is None:
        raise RatelimitRefusal("namespace_id must be an integer of at most 16 digits")
    if DIGEST_RE.fullmatch(digest) is None:
        raise RatelimitRefusal("key must be a sha256 hex digest")
    if type(limit) is not int or not 0 <= limit <= LIMIT_MAX:
        raise RatelimitRefusal(f"limit must be an integer 0..{LIMIT_MAX}")
    if period not in PERIODS or type(period) is not int:
        raise RatelimitRefusal("period must be 10 or 60")


def counter_name(ns: str, namespace_id: str, period: int, digest: str) -> str:
    return f"{ns}:{namespace_id}:{period}:{digest}"


class RatelimitStore(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    async def hit(self, ns: str, namespace_id: str, digest: str, limit: int,
                  period: int) -> bool: ...


class MemoryRatelimitStore:
    """One process's counters (`wdl dev` runs one data service). Windows that ended are
    dropped as new ones begin, so memory holds only the current window's keys."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._windows: dict[int, tuple[int, dict[str, int]]] = {}  # period -> (window, counts)

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._windows.clear()

    async def hit(self, ns: str, namespace_id: str, digest: str, limit: int,
                  period: int) -> bool:
        check(ns, namespace_id, digest, limit, period)
        window = int(self._clock() // period)
        current = self._windows.get(period)
        if current is None or current[0] != window:
            current = (window, {})
            self._windows[period] = current
        counts = current[1]
        name = counter_name(ns, namespace_id, period, digest)
        seen = counts.get(name, 0)
        if seen >= limit:
            return False
        counts[name] = seen + 1
        return True


# One atomic step per call, on Redis's clock (every data service replica agrees on the
# window): KEYS[1] the counter's name without its window; ARGV: limit, period.
_HIT = """
local now = redis.call('TIME')
local period = tonumber(ARGV[2])
local key = KEYS[1] .. ':' .. math.floor(tonumber(now[1]) / period)
local seen = tonumber(redis.call('GET', key) or '0')
if seen >= tonumber(ARGV[1]) then return 0 end
redis.call('INCR', key)
if seen == 0 then redis.call('EXPIRE', key, period * 2) end
return 1
"""


class RedisRatelimitStore:
    def __init__(self, url: str, *, prefix: str) -> None:
        self.url = url
        self.prefix = prefix
        self._redis: Redis | None = None
        self._script: object | None = None

    async def start(self) -> None:
        self._redis = Redis.from_url(self.url)
        self._script = self._redis.register_script(_HIT)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    async def hit(self, ns: str, namespace_id: str, digest: str, limit: int,
                  period: int) -> bool:
        check(ns, namespace_id, digest, limit, period)
        assert self._script is not None, "ratelimit store is not started"
        name = self.prefix + counter_name(ns, namespace_id, period, digest)
        result = await self._script(keys=[name], args=[limit, period])  # type: ignore[operator]
        return bool(int(result))


def ratelimit_store_from_kv_url(kv_url: str) -> RatelimitStore:
    """Beside the KV data: on the KV Redis (its prefix + `rl:`), else in memory."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    parts = urlsplit(kv_url)
    if parts.scheme in ("redis", "rediss", "unix"):
        from services.kv.redis_store import DEFAULT_PREFIX

        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = next((value for name, value in query if name == "prefix"), DEFAULT_PREFIX)
        rest = [(name, value) for name, value in query if name != "prefix"]
        return RedisRatelimitStore(urlunsplit(parts._replace(query=urlencode(rest))),
                                   prefix=f"{prefix}rl:")
    return MemoryRatelimitStore()
