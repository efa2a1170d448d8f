"""Open a KV store from one URL string (Settings.kv_url)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from services.kv.port import KvStore


class InvalidKvUrl(ValueError):
    pass


def kv_store_from_url(url: str) -> KvStore:
    """Build (not start) a store.

    - `redis://[:password@]host:port/db?prefix=wdlkv:` (also `rediss://`, `unix://`); `prefix`
      (default `wdlkv:`) keeps KV data apart from the projection's keys; other query
      parameters go to redis-py.
    - `sqlite:///absolute/path.sqlite`, `sqlite://relative/path.sqlite`.
    """
    parts = urlsplit(url)
    if parts.scheme in ("redis", "rediss", "unix"):
        from services.kv.redis_store import DEFAULT_PREFIX, RedisKvStore

        query = parse_qsl(parts.query, keep_blank_values=True)
        prefix = DEFAULT_PREFIX
        rest = []
        for name, value in query:
            if name == "prefix":
                prefix = value
            else:
                rest.append((name, value))
        if not prefix:
            raise InvalidKvUrl(f"{url!r}: prefix must not be empty (it separates KV data "
                               "from the projection's keys)")
        return RedisKvStore(urlunsplit(parts._replace(query=urlencode(rest))), prefix=prefix)
    if parts.scheme == "sqlite":
        from services.kv.sqlite_store import SqliteKvStore

        path = parts.netloc + parts.path
        if path.startswith("//"):  # f"sqlite:///{absolute}" writes four slashes
            path = "/" + path.lstrip("/")
        if not path:
            raise InvalidKvUrl(f"{url!r} names no file")
        if parts.query:
            raise InvalidKvUrl(f"{url!r}: unknown parameters {parts.query!r}")
        return SqliteKvStore(path)
    raise InvalidKvUrl(f"{url!r}: unsupported scheme {parts.scheme!r} (redis, sqlite)")


@contextlib.asynccontextmanager
async def open_kv_store(url: str) -> AsyncIterator[KvStore]:
    """`async with open_kv_store(url) as store:` started on entry, stopped on exit."""
    store = kv_store_from_url(url)
    await store.start()
    try:
        yield store
    finally:
        await store.stop()
