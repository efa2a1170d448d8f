"""The KV store port: values of one KV namespace, keyed by (namespace, resource, key).

`namespace` is the platform namespace (the tenant), `resource` the KV namespace
id; every adapter keys all data by both, so two resources never share a key.
Metadata travels as its JSON text (validated at the edges, stored verbatim) so
the hot read path never parses it. Expirations are absolute UNIX seconds; an
entry whose expiration is not in the future does not exist for any read.

Limits are enforced by the callers (routes, wrapper); a store accepts any
expiration, including one in the past (tests use that to expire a key).
"""

from __future__ import annotations

import abc
import base64
import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Self

MAX_LIST_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class KvEntry:
    value: bytes
    metadata: str | None = None  # JSON text
    expiration: int | None = None


@dataclass(frozen=True, slots=True)
class KvKey:
    name: str
    expiration: int | None = None
    metadata: str | None = None  # JSON text


@dataclass(frozen=True, slots=True)
class KvPage:
    keys: list[KvKey]
    list_complete: bool
    cursor: str | None = None


def now_s() -> int:
    return int(time.time())


def encode_cursor(last_key: str) -> str:
    """Opaque to clients: the last key of the page, so the next one starts after it."""
    return base64.urlsafe_b64encode(last_key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode()
    except (ValueError, UnicodeError) as exc:
        raise InvalidCursor(cursor) from exc


class InvalidCursor(ValueError):
    def __init__(self, cursor: str) -> None:
        super().__init__(f"invalid list cursor {cursor[:64]!r}")


def prefix_upper_bound(prefix: bytes) -> bytes:
    """Exclusive upper bound of the keys starting with `prefix`: 0xFF never occurs in UTF-8."""
    return prefix + b"\xff"


class KvStore(abc.ABC):
    """Explicit lifecycle: construct (no I/O), `await start()`, use, `await stop()`."""

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def stop(self) -> None: ...

    @abc.abstractmethod
    async def get(self, namespace: str, resource: str, key: str) -> KvEntry | None: ...

    async def get_many(self, namespace: str, resource: str,
                       keys: Sequence[str]) -> list[KvEntry | None]:
        """Entries in the order of `keys` (None where missing). Adapters batch it."""
        return [await self.get(namespace, resource, k) for k in keys]

    @abc.abstractmethod
    async def put(self, namespace: str, resource: str, key: str, value: bytes, *,
                  expiration: int | None = None, metadata: str | None = None) -> None:
        """Replace the whole entry: a put without metadata drops the old metadata."""

    @abc.abstractmethod
    async def delete(self, namespace: str, resource: str, key: str) -> None: ...

    @abc.abstractmethod
    async def list(self, namespace: str, resource: str, *, prefix: str = "",
                   limit: int = MAX_LIST_LIMIT, cursor: str | None = None) -> KvPage:
        """Keys in UTF-8 byte order; `cursor` only when more keys follow."""

    @abc.abstractmethod
    async def purge(self, namespace: str, resource: str) -> int:
        """Delete every entry of the resource; returns how many were removed."""

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()
