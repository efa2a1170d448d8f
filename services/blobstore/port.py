"""The BlobStore port: content-addressed, immutable bytes keyed by their sha256.

Every adapter stores a blob under `sha256/<hex>` and gets the checks for
free from this base class: `put` hashes (and checks what the caller
expected), `get` re-hashes what it read and raises `BlobCorrupt` on a
mismatch, digests are validated before any I/O. Adapters implement only the
raw `_open/_close/_write/_read/_exists/_delete/_digests` steps.
"""

from __future__ import annotations

import abc
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from types import TracebackType
from typing import Self

from services.blobstore.errors import (
    BlobCorrupt,
    BlobStoreNotStarted,
    BlobTooLarge,
    DigestMismatch,
)
from services.blobstore.ref import BlobRef, check_digest, ref_for, sha256_hex


class BlobStore(abc.ABC):
    """Lifecycle: constructors do no I/O; `start()` connects (and creates the
    bucket or directory), `stop()` releases. Use `async with`.

    Blobs are immutable: a second `put` of the same bytes is a no-op that
    returns the same ref. `delete` and `put` are idempotent, so retries are
    always safe.
    """

    def __init__(self) -> None:
        self._started = False

    # --- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        if self._started:
            return
        await self._open()
        self._started = True

    async def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        await self._close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def started(self) -> bool:
        return self._started

    # --- operations ---------------------------------------------------------

    async def put(
        self,
        data: bytes,
        *,
        expected_sha256: str | None = None,
        expected_size: int | None = None,
    ) -> BlobRef:
        """Store `data` under its sha256 and return its ref.

        With `expected_sha256` / `expected_size`, bytes that do not match are
        refused with `DigestMismatch` before anything is written.
        """
        ref = ref_for(data, expected_sha256=expected_sha256, expected_size=expected_size)
        self._require_started()
        await self._write(ref, data)
        return ref

    async def put_stream(
        self,
        chunks: AsyncIterable[bytes],
        *,
        max_size: int,
        expected_sha256: str | None = None,
    ) -> BlobRef:
        """Store a streamed upload of at most `max_size` bytes (BlobTooLarge beyond)."""
        self._require_started()
        hasher = hashlib.sha256()
        parts: list[bytes] = []
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            if size > max_size:
                raise BlobTooLarge(max_size)
            hasher.update(chunk)
            parts.append(chunk)
        data = b"".join(parts)
        if expected_sha256 is not None and check_digest(expected_sha256) != hasher.hexdigest():
            raise DigestMismatch(
                f"expected sha256 {expected_sha256}, the bytes hash to {hasher.hexdigest()}"
            )
        return await self.put(data)

    async def get(self, sha256: str) -> bytes:
        """The blob's bytes, re-hashed: `BlobNotFound` if absent, `BlobCorrupt` if altered."""
        check_digest(sha256)
        self._require_started()
        data = await self._read(sha256)
        actual = sha256_hex(data)
        if actual != sha256:
            raise BlobCorrupt(sha256, actual, len(data))
        return data

    async def exists(self, sha256: str) -> bool:
        check_digest(sha256)
        self._require_started()
        return await self._exists(sha256)

    async def delete(self, sha256: str) -> None:
        """Remove the blob; deleting an absent blob is not an error."""
        check_digest(sha256)
        self._require_started()
        await self._delete(sha256)

    async def list(self) -> AsyncIterator[str]:
        """Every stored digest (keys outside the `sha256/<hex>` layout are skipped)."""
        self._require_started()
        async for digest in self._digests():
            yield digest

    def _require_started(self) -> None:
        if not self._started:
            raise BlobStoreNotStarted(f"{type(self).__name__} is not started")

    # --- adapter steps --------------------------------------------------------

    @abc.abstractmethod
    async def _open(self) -> None: ...

    @abc.abstractmethod
    async def _close(self) -> None: ...

    @abc.abstractmethod
    async def _write(self, ref: BlobRef, data: bytes) -> None:
        """Store `data` (already hashed to `ref`) unless a blob is there; atomic."""

    @abc.abstractmethod
    async def _read(self, sha256: str) -> bytes:
        """The stored bytes as they are; raise BlobNotFound if absent."""

    @abc.abstractmethod
    async def _exists(self, sha256: str) -> bool: ...

    @abc.abstractmethod
    async def _delete(self, sha256: str) -> None: ...

    @abc.abstractmethod
    def _digests(self) -> AsyncIterator[str]: ...
